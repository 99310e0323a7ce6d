"""Calibration profiles: measured model parameters per GPU, backend and kernel configuration.

A profile (``data/profiles/<gpu>.json``) holds, per backend group (``"own"`` for our kernels,
``"cublas"``, ``"cudnn"``), GPU-level physics (the cost of each extra kernel a call launches, the
bandwidth from L2 to the SMs, the DRAM bandwidth one SM can draw; a family may carry its own two
bandwidths, as each of our kernels does; per dtype, the math rate the board sustains at its power
limit, ``wavemodel.power``) and the per-configuration
parameters a ``KernelConfig`` leaves to calibration, given per family and per configuration (the
configuration's own values win). Without a profile the model runs on catalogue defaults and says so
(``Prediction.calibrated`` is False). Fitting lives in ``wavemodel.fit``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from importlib import resources

from .configs import KernelConfig, own_kernels
from .gpus import GPUSpec

FITTED_FIELDS = ("efficiency", "tile_overhead_s", "kernel_fixed_s", "single_block_speedup",
                 "tail_block_speedup", "bandwidth_efficiency", "store_bytes_per_s", "k_iter_latency_s",
                 "cta_dispatch_s", "straggler_s", "write_bandwidth_efficiency", "unhidden_fraction",
                 "scalar_store_factor",
                 "scalar_load_bytes_per_s", "scalar_write_bytes_per_s", "channel_traffic_factor",
                 "channel_dram_factor", "line_aligned_rows_factor", "off_sector_write_factor",
                 "partial_line_write_factor",
                 "l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s")
# Settings of the model's form that a profile may pin for the families it was fitted under: a profile
# fitted before the form changed keeps replaying as it was fitted (ours, kept beside the figures they
# gave: dram_l2_norm 0 in validation/data/h100-sxm/boards/profile_before_conv_extra.json,
# fresh_convs/profile_one_family.json and parity_probe/profile_predicted.json). Never fitted.
PINNED_FIELDS = ("dram_l2_norm",)
# Uncalibrated L2 -> SM bandwidths in bytes per SM clock: one SM's L1 takes in up to 64 bytes per
# clock; the L2 serves 5120 bytes per clock to A100's 108 SMs (NVIDIA A100 whitepaper), ~48 per SM.
SM_INGEST_BYTES_PER_CLOCK = 64
L2_BYTES_PER_CLOCK_PER_SM = 48


@dataclass(frozen=True)
class Profile:
    launch_overhead_s: float = 1.5e-6           # each extra kernel of a call (memset, split-K reduce)
    l2_bandwidth_bytes_per_s: float = 0.0       # 0: L2_BYTES_PER_CLOCK_PER_SM x SMs x clock
    sm_bandwidth_bytes_per_s: float = 0.0       # 0: SM_INGEST_BYTES_PER_CLOCK x clock
    families: dict = field(default_factory=dict, hash=False)  # family -> {field: value}
    configs: dict = field(default_factory=dict, hash=False)   # config name -> {field: value}
    calibrated: bool = False
    # dtype -> math rate the board sustains at its power limit (wavemodel.power), where measured
    sustained_flops_per_s: dict = field(default_factory=dict, hash=False)

    def apply(self, cfg: KernelConfig) -> KernelConfig:
        values = {**self.families.get(cfg.family, {}), **self.configs.get(cfg.name, {})}
        if not values:
            return cfg
        bad = set(values) - set(FITTED_FIELDS) - set(PINNED_FIELDS)
        if bad:
            raise ValueError(f"profile for {cfg.name!r}: unknown parameters {sorted(bad)}")
        return dataclasses.replace(cfg, **values)

    def l2_bandwidth(self, gpu: GPUSpec, cfg: KernelConfig | None = None) -> float:
        """Bandwidth out of L2: ``cfg``'s own where its family has one, else the GPU's."""
        own = cfg.l2_bandwidth_bytes_per_s if cfg is not None else 0.0
        return own or self.l2_bandwidth_bytes_per_s or (
            L2_BYTES_PER_CLOCK_PER_SM * gpu.sm_count * gpu.boost_clock_mhz * 1e6)

    def sm_bandwidth(self, gpu: GPUSpec, cfg: KernelConfig | None = None) -> float:
        """Bandwidth into one SM: ``cfg``'s own where its family has one, else the GPU's."""
        own = cfg.sm_bandwidth_bytes_per_s if cfg is not None else 0.0
        return own or self.sm_bandwidth_bytes_per_s or SM_INGEST_BYTES_PER_CLOCK * gpu.boost_clock_mhz * 1e6


UNCALIBRATED = Profile()


def group_of(backend_name: str) -> str:
    """Profile group of a backend: libraries by name, every one of our kernels under "own"."""
    return "own" if backend_name in own_kernels() else backend_name


@functools.cache
def load_profiles(gpu_name: str) -> dict:
    path = resources.files("wavemodel").joinpath(f"data/profiles/{gpu_name}.json")
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def profile_for(gpu: GPUSpec, backend_name: str) -> Profile:
    """The shipped profile for ``gpu`` and ``backend_name``, or the uncalibrated defaults."""
    group = load_profiles(gpu.name).get("backends", {}).get(group_of(backend_name))
    if not group:
        return UNCALIBRATED
    return profile_from_dict(group)


def profile_from_dict(d: dict) -> Profile:
    gpu_level = {k: float(d[k]) for k in ("launch_overhead_s", "l2_bandwidth_bytes_per_s",
                                          "sm_bandwidth_bytes_per_s") if k in d}
    sustained = {k: float(v) for k, v in d.get("sustained_flops_per_s", {}).items()}
    return Profile(**gpu_level, families={k: dict(v) for k, v in d.get("families", {}).items()},
                   configs={k: dict(v) for k, v in d.get("configs", {}).items()}, calibrated=True,
                   sustained_flops_per_s=sustained)


def profile_to_dict(p: Profile) -> dict:
    return {"launch_overhead_s": p.launch_overhead_s, "l2_bandwidth_bytes_per_s": p.l2_bandwidth_bytes_per_s,
            "sm_bandwidth_bytes_per_s": p.sm_bandwidth_bytes_per_s, "families": p.families,
            "configs": p.configs,
            **({"sustained_flops_per_s": p.sustained_flops_per_s} if p.sustained_flops_per_s else {})}
