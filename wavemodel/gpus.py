"""GPU catalogue: ``GPUSpec`` frozen dataclasses loaded (and validated) from ``data/gpus.toml``.

``gpu(name)`` accepts a catalogue key, an alias or the device's own name; ``gpu("local")`` builds a
spec from the device CUDA reports (through ``wavemodel.hardware.device``, which needs CuPy).
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources

from .shapes import DTYPES

_ARCH_FIELDS = (
    "compute_capability", "max_threads_per_sm", "max_warps_per_sm", "max_blocks_per_sm",
    "max_threads_per_block", "regs_per_sm", "max_regs_per_block", "max_regs_per_thread",
    "reg_alloc_unit_regs", "warp_schedulers_per_sm", "smem_per_sm_bytes", "max_smem_per_block_bytes",
    "smem_reserved_per_block_bytes", "smem_alloc_unit_bytes",
)


@dataclass(frozen=True)
class GPUSpec:
    name: str                      # catalogue key, e.g. "h100-sxm" (also the dataset folder's slug)
    display_name: str
    arch: str                      # "sm_90"
    compute_capability: str        # "9.0"
    sm_count: int
    boost_clock_mhz: float
    l2_bytes: int
    dram_bytes: int
    dram_bandwidth_bytes_per_s: float
    peak_flops_per_s: dict = field(hash=False)   # dtype -> dense peak (tensor cores where the card has them)
    max_threads_per_sm: int = 2048
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    max_threads_per_block: int = 1024
    regs_per_sm: int = 65536
    max_regs_per_block: int = 65536
    max_regs_per_thread: int = 255
    reg_alloc_unit_regs: int = 256
    warp_schedulers_per_sm: int = 4
    smem_per_sm_bytes: int = 233472
    max_smem_per_block_bytes: int = 232448
    smem_reserved_per_block_bytes: int = 1024
    smem_alloc_unit_bytes: int = 128
    warp_size: int = 32
    aliases: tuple = ()
    source: str = "catalogue"      # "catalogue" or "local device"
    # share of dram_bandwidth_bytes_per_s a streaming read kernel reaches, measured on the card
    # (validation/dram_probe.py); None where not measured. The prior of our kernels' fitted
    # bandwidth_efficiency (wavemodel calibrate).
    dram_read_fraction: float | None = None

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", "float") and not (isinstance(v, int | float) and v > 0):
                if f.name == "smem_reserved_per_block_bytes" and v == 0:
                    continue
                raise ValueError(f"gpu {self.name}: {f.name} must be a positive number, got {v!r}")
        missing = [d for d in DTYPES if d not in self.peak_flops_per_s]
        if missing:
            raise ValueError(f"gpu {self.name}: peak_flops_per_s lacks {missing}")
        if self.peak_flops_per_s["fp32"] <= 0:
            raise ValueError(f"gpu {self.name}: peak_flops_per_s.fp32 must be positive")
        if self.max_warps_per_sm * self.warp_size != self.max_threads_per_sm:
            raise ValueError(f"gpu {self.name}: max_warps_per_sm * warp_size != max_threads_per_sm")
        if self.max_smem_per_block_bytes > self.smem_per_sm_bytes:
            raise ValueError(f"gpu {self.name}: max_smem_per_block_bytes exceeds smem_per_sm_bytes")
        if self.dram_read_fraction is not None and not 0 < self.dram_read_fraction <= 1:
            raise ValueError(f"gpu {self.name}: dram_read_fraction must be in (0, 1], "
                             f"got {self.dram_read_fraction!r}")

    @property
    def cc_major(self) -> int:
        return int(self.compute_capability.split(".")[0])

    def peak_flops(self, dtype: str, math: str = "tensor") -> float:
        """Dense peak rate for ``dtype``; ``math="simt"`` is the CUDA-core rate (fp32 FMA, fp16 2x)."""
        if math == "simt":
            return self.peak_flops_per_s["fp32"] * (2.0 if dtype in ("fp16", "bf16") else 1.0)
        rate = self.peak_flops_per_s[dtype]
        if rate <= 0:
            raise ValueError(
                f"dtype: {self.display_name} has no {dtype} tensor-core mode; allowed values: "
                + ", ".join(d for d in DTYPES if self.peak_flops_per_s[d] > 0)
            )
        return rate

    def __str__(self) -> str:
        return f"{self.display_name} ({self.name}, {self.arch}, {self.sm_count} SMs)"


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@functools.cache
def catalogue() -> dict[str, GPUSpec]:
    """Every GPU in ``data/gpus.toml``, validated, keyed by catalogue name."""
    raw = tomllib.loads(resources.files("wavemodel").joinpath("data/gpus.toml").read_text())
    archs = raw["arch"]
    out = {}
    for key, entry in raw["gpu"].items():
        arch = archs[entry["arch"]]
        unknown = set(arch) - set(_ARCH_FIELDS)
        if unknown:
            raise ValueError(f"gpus.toml arch {entry['arch']}: unknown keys {sorted(unknown)}")
        values = dict(arch) | {k: v for k, v in entry.items() if k != "aliases"}
        values["aliases"] = tuple(entry.get("aliases", ()))
        values["peak_flops_per_s"] = {k: float(v) for k, v in values["peak_flops_per_s"].items()}
        out[key] = GPUSpec(name=key, **values)
    return out


def _index() -> dict[str, str]:
    idx = {}
    for key, spec in catalogue().items():
        for n in (key, spec.display_name, *spec.aliases):
            idx[_normal(n)] = key
    return idx


def gpu(name: str | GPUSpec = "h100-sxm") -> GPUSpec:
    """Look a GPU up by catalogue name, alias or device name; ``"local"`` queries the device."""
    if isinstance(name, GPUSpec):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"gpu: expected a GPU name such as 'h100-sxm', got {name!r}")
    if name.strip().lower() == "local":
        from .hardware.device import local_gpu_spec  # the only path that touches a GPU

        return local_gpu_spec()
    idx = _index()
    key = idx.get(_normal(name))
    if key is None:
        key = match_device_name(name)
    if key is None:
        close = difflib.get_close_matches(_normal(name), list(idx), n=4, cutoff=0.4)
        names = sorted({idx[c] for c in close}) or sorted(catalogue())
        raise ValueError(
            f"gpu: unknown GPU {name!r}; closest known names: {', '.join(names)} "
            f"(all: {', '.join(sorted(catalogue()))})"
        )
    return catalogue()[key]


def match_device_name(device_name: str) -> str | None:
    """Map a CUDA device name ("NVIDIA H100 80GB HBM3") to a catalogue key, or None."""
    n = _normal(device_name)
    for key, spec in catalogue().items():
        if _normal(spec.display_name) == n:
            return key
    rules = [
        ("h100", "pcie", "h100-pcie"), ("h100", "", "h100-sxm"), ("h200", "", "h200"),
        ("b200", "", "b200"), ("a100", "80gb", "a100-80gb"), ("a100", "", "a100-40gb"),
        ("l40s", "", "l40s"), ("rtx-4090", "", "rtx-4090"), ("rtx-3090", "", "rtx-3090"),
        ("v100", "", "v100-sxm2"), ("t4", "", "t4"), ("a10", "", "a10"), ("l4", "", "l4"),
    ]
    tokens = set(n.split("-"))
    for main, extra, key in rules:
        main_ok = main in n if "-" in main else main in tokens
        if main_ok and (not extra or extra in n):
            return key
    return None
