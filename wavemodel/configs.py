"""Kernel configurations: the tiling a GEMM kernel uses, and the catalogues of configurations.

A ``KernelConfig`` is what the model needs to know about one kernel: its CTA tile, threads,
registers and shared memory (for occupancy), pipeline stages, cluster shape, split-K factor, which
unit does the math, and the model parameters that calibration fits (``efficiency``,
``tile_overhead_s``, ``kernel_fixed_s``, ``single_block_speedup``, ``bandwidth_efficiency``,
``store_bytes_per_s``, ``scalar_store_factor``, ``scalar_load_bytes_per_s``,
``scalar_write_bytes_per_s``, ``unhidden_fraction``, ...: ``FITTED_FIELDS``).
Catalogues live in ``data/configs/*.toml``: ``own.toml`` for our kernels (registers as the compiler
reports them for sm_90) and one file per library and architecture family for cuBLAS / cuDNN.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields, replace
from importlib import resources

from .gpus import GPUSpec
from .occupancy import Occupancy, occupancy
from .shapes import DTYPES

MATH_UNITS = ("tensor", "simt")


@dataclass(frozen=True)
class KernelConfig:
    name: str
    tile_m: int
    tile_n: int
    tile_k: int
    threads: int
    regs_per_thread: int
    smem_per_block_bytes: int          # static + dynamic shared memory of one block
    stages: int = 1
    cluster_m: int = 1
    cluster_n: int = 1
    split_k: int = 1
    math: str = "tensor"               # "tensor" (tensor cores) or "simt" (CUDA cores)
    dtypes: tuple = DTYPES             # input dtypes the kernel runs
    alignment_elements: int = 1        # the kernel needs N and K to be multiples of this (1: any)
    only_misaligned: bool = False      # a fallback the library runs only where 16-byte alignment fails
    plain_gemm_only: bool = False      # a GEMM kernel a conv library runs only for 1x1, stride-1 convs
    persistent: bool = False           # one CTA per SM slot looping over tiles (same wave arithmetic)
    efficiency: float = 0.7            # fraction of the SM's peak a saturated SM reaches in the main loop
    tile_overhead_s: float = 0.5e-6    # per tile on the busiest SM: prologue, pipeline fill, epilogue
    kernel_fixed_s: float = 2.5e-6     # per kernel: launch in a graph, start-up and drain
    single_block_speedup: float = 1.0  # how much faster a block runs alone on an SM than among bps blocks
    tail_block_speedup: float = 0.0    # that speedup in the last wave after a full one (0: the same)
    bandwidth_efficiency: float = 0.85  # fraction of DRAM bandwidth the kernel's streams reach
    write_bandwidth_efficiency: float = 0.0  # that fraction for its C writes (0: as bandwidth_efficiency)
    store_bytes_per_s: float = 0.0     # one SM's epilogue store rate for C (0: the epilogue is free)
    unhidden_fraction: float = 0.0     # share of the shorter of math and memory not hidden under the other
    k_iter_latency_s: float = 0.0      # one CTA's shortest main-loop iteration, however idle its SM (0: none)
    cta_dispatch_s: float = 0.0        # per CTA of the first wave: start-up under contention (0: free)
    straggler_s: float = 0.0           # mean random delay of one SM's last tiles: the call waits for the
    #                                    slowest of the last wave's SMs, straggler_s x H(SMs) (0: none)
    scalar_store_factor: float = 1.0   # epilogue slowdown where C's rows are not 16-byte aligned
    scalar_load_bytes_per_s: float = 0.0  # one SM's element-wise operand load rate where A's (K) or
    #                                    B's (N) rows are not 16-byte aligned (0: loads always vectors)
    scalar_write_bytes_per_s: float = 0.0  # the memory system's rate, all SMs together, for C's element-wise
    #                                    writes where its rows are not 16-byte aligned (0: no such term)
    line_aligned_rows_factor: float = 1.0  # main-loop slowdown where A's rows all start at one offset of
    #                                    their 128-byte lines (K x in_bytes a multiple of 128; 1: none)
    off_sector_write_factor: float = 1.0  # DRAM cost of each byte of C where its rows start off 32-byte
    #                                    sectors (N x out_bytes % 32 != 0: partial-sector writes; 1: none)
    partial_line_write_factor: float = 1.0  # DRAM cost of each byte of C where its rows start off 128-byte
    #                                    lines (N x out_bytes % 128 != 0: tiles share lines; 1: none)
    last_tile_full: bool = False       # the busiest SM's last tile stores a full interior tile, not the mean
    epilogue_drains_c: bool = False    # C's DRAM writes happen in the epilogue, after the main loop
    channel_traffic_factor: float = 1.0  # conv: L2 -> SM traffic multiplier where C is off 32-byte sectors
    channel_dram_factor: float = 1.0   # conv: DRAM-stream time multiplier where C is off 32-byte sectors
    padding_loads_free: bool = False   # conv: taps in the padding are zero-filled, not loaded (A panel)
    taps_reread_past_l2: bool = False  # conv: taps read the input again from DRAM where a tap pass of
    #                                    the running CTAs' pixels outgrows the L2 (latency.tap_reread_bytes)
    edge_loads_free: bool = False      # A rows past M and B rows past N are zero-filled, not loaded
    l2_counts_writes: bool = False     # C's writes draw on the L2 bandwidth beside the panel reads
    smooth_overlap: bool = False       # math and memory combine as a p-norm, not max + unhidden * min
    dram_l2_norm: float = 0.0          # DRAM and L2 streams combine as a p-norm of this order, since both
    #                                    pass the L2 slices (0: the longer of the two; latency.streams_s)
    l2_bandwidth_bytes_per_s: float = 0.0  # what this kernel's loads draw out of L2 (0: the profile's)
    sm_bandwidth_bytes_per_s: float = 0.0  # ... and into one SM (0: the profile's)
    tile_m_granule: int = 0            # problem-sized M tile (0: off): per shape the smallest multiple of
    #                                    this, at most tile_m, filling the waves tile_m's tiles need (nvjet)
    extra_kernels: int = 0             # kernels launched beside the main one every call (e.g. a memset)
    kind: str = "gemm"                 # "gemm" or "conv" (implicit GEMM)
    family: str = ""                   # calibration group: configurations of a family share parameters
    pointwise_family: str = ""         # conv: the family whose parameters its 1x1-filter calls take (their
    #                                    A panel is the input read row by row, no tap walk; "": ``family``)
    source: str = ""

    def __post_init__(self):
        for name in ("tile_m", "tile_n", "tile_k", "threads", "stages", "cluster_m", "cluster_n",
                     "split_k", "alignment_elements"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        for name in ("regs_per_thread", "smem_per_block_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name}: must be an integer >= 0, got {v!r}")
        if self.math not in MATH_UNITS:
            raise ValueError(f"math: {self.math!r} is not one of {', '.join(MATH_UNITS)}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"efficiency: must be in (0, 1], got {self.efficiency!r}")
        if self.scalar_store_factor < 1:
            raise ValueError(f"scalar_store_factor: must be >= 1, got {self.scalar_store_factor!r}")
        if self.line_aligned_rows_factor < 1:
            raise ValueError(f"line_aligned_rows_factor: must be >= 1, got {self.line_aligned_rows_factor!r}")
        if self.off_sector_write_factor < 1:
            raise ValueError(f"off_sector_write_factor: must be >= 1, got {self.off_sector_write_factor!r}")
        if self.partial_line_write_factor < 1:
            raise ValueError(
                f"partial_line_write_factor: must be >= 1, got {self.partial_line_write_factor!r}")
        if self.channel_traffic_factor < 1:
            raise ValueError(f"channel_traffic_factor: must be >= 1, got {self.channel_traffic_factor!r}")
        if self.channel_dram_factor < 1:
            raise ValueError(f"channel_dram_factor: must be >= 1, got {self.channel_dram_factor!r}")
        for name in ("l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s", "scalar_load_bytes_per_s",
                     "scalar_write_bytes_per_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.store_bytes_per_s < 0:
            raise ValueError(f"store_bytes_per_s: must be >= 0, got {self.store_bytes_per_s!r}")
        if self.dram_l2_norm and not self.dram_l2_norm >= 1:
            raise ValueError(f"dram_l2_norm: must be 0 (off) or >= 1, got {self.dram_l2_norm!r}")
        if not 0 <= self.unhidden_fraction <= 1:
            raise ValueError(f"unhidden_fraction: must be in [0, 1], got {self.unhidden_fraction!r}")
        if not 0 <= self.write_bandwidth_efficiency <= 1:
            raise ValueError(f"write_bandwidth_efficiency: must be in [0, 1], "
                             f"got {self.write_bandwidth_efficiency!r}")
        if not 0 < self.bandwidth_efficiency <= 1:
            raise ValueError(f"bandwidth_efficiency: must be in (0, 1], got {self.bandwidth_efficiency!r}")
        for name in ("tile_overhead_s", "kernel_fixed_s", "k_iter_latency_s", "cta_dispatch_s",
                     "straggler_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("tile_m_granule",):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name}: must be an integer >= 0, got {v!r}")
        if not isinstance(self.extra_kernels, int) or self.extra_kernels < 0:
            raise ValueError(f"extra_kernels: must be an integer >= 0, got {self.extra_kernels!r}")
        if self.tail_block_speedup and self.tail_block_speedup < 1:
            raise ValueError(f"tail_block_speedup: must be 0 or >= 1, got {self.tail_block_speedup!r}")
        if self.single_block_speedup < 1:
            raise ValueError(f"single_block_speedup: must be >= 1, got {self.single_block_speedup!r}")
        if self.pointwise_family and self.kind != "conv":
            raise ValueError(f"pointwise_family: only a conv kernel (kind = 'conv') has one, got kind "
                             f"{self.kind!r}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise ValueError(f"dtypes: {bad} not in {', '.join(DTYPES)}")
        object.__setattr__(self, "dtypes", tuple(self.dtypes))

    @property
    def tile(self) -> str:
        return f"{self.tile_m}x{self.tile_n}x{self.tile_k}"

    @property
    def cluster_size(self) -> int:
        return self.cluster_m * self.cluster_n

    def occupancy(self, gpu: GPUSpec) -> Occupancy:
        """Resident blocks per SM on ``gpu``; ValueError naming the config if none fits."""
        try:
            return occupancy(self.threads, self.regs_per_thread, self.smem_per_block_bytes, gpu)
        except ValueError as e:
            raise ValueError(f"config {self.name!r} cannot run on {gpu.display_name}: {e}") from None


CONFIG_FIELDS = {f.name for f in fields(KernelConfig)}


def config_from_dict(d: dict) -> KernelConfig:
    unknown = set(d) - CONFIG_FIELDS
    if unknown:
        raise ValueError(f"config {d.get('name', '?')!r}: unknown keys {sorted(unknown)}; "
                         f"allowed: {', '.join(sorted(CONFIG_FIELDS))}")
    return KernelConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@functools.cache
def load_catalogue(file: str) -> tuple[KernelConfig, ...]:
    """Configurations in ``data/configs/<file>.toml`` (a list of ``[[config]]`` tables with defaults)."""
    path = resources.files("wavemodel").joinpath(f"data/configs/{file}.toml")
    raw = tomllib.loads(path.read_text())
    defaults = raw.get("defaults", {})
    configs = tuple(config_from_dict(defaults | c) for c in raw["config"])
    names = [c.name for c in configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"data/configs/{file}.toml: duplicate config names {sorted(dup)}")
    return configs


def catalogue_files() -> list[str]:
    root = resources.files("wavemodel").joinpath("data/configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def for_filter(cfg: KernelConfig, pointwise: bool, families=None) -> KernelConfig:
    """``cfg`` as it runs a convolution with a 1x1 filter (``pointwise``) or a larger one: where it has a
    ``pointwise_family``, a 1x1 call takes that family's calibrated parameters, since our implicit-GEMM
    conv reads a 1x1 filter's A panel as rows of the input itself and walks an R x S filter tap by tap,
    and the two load paths reach different rates (``wavemodel calibrate`` fits them apart). Given the
    profile's ``families``, a profile without the pointwise family (one fitted before the split) keeps
    ``cfg``'s own family for every filter."""
    if pointwise and cfg.pointwise_family and (families is None or cfg.pointwise_family in families):
        return replace(cfg, family=cfg.pointwise_family)
    return cfg


def own_kernels() -> dict[str, KernelConfig]:
    """Our own kernels by the name the datasets and ``predict_latency(backend=NAME)`` use."""
    if "own" not in catalogue_files():
        return {}
    return {c.name: c for c in load_catalogue("own")}


def library_file(backend: str, gpu: GPUSpec) -> str:
    """The catalogue for ``backend`` ("cublas"/"cudnn") on ``gpu``'s architecture, with fallbacks."""
    files = catalogue_files()
    arch = int(gpu.arch.split("_")[1])
    # nearest architecture at or below this one, else the lowest we have
    candidates = sorted((int(f.split("_sm")[1]), f) for f in files if f.startswith(backend + "_sm"))
    if not candidates and backend == "cudnn":
        return library_file("cublas", gpu)   # a conv is its implicit GEMM: GEMM tiles stand in
    if not candidates:
        raise ValueError(f"backend: no configuration catalogue for {backend!r}")
    below = [f for a, f in candidates if a <= arch]
    return below[-1] if below else candidates[0][1]


def library_configs(backend: str, gpu: GPUSpec, dtype: str) -> tuple[KernelConfig, ...]:
    """Configurations the library may run for ``dtype`` on ``gpu`` that fit on its SMs."""
    out = []
    for c in load_catalogue(library_file(backend, gpu)):
        if dtype not in c.dtypes:
            continue
        try:
            c.occupancy(gpu)
        except ValueError:
            continue
        out.append(c)
    if not out:
        raise ValueError(f"dtype: no {backend} configuration for {dtype} on {gpu.display_name}")
    return tuple(out)
