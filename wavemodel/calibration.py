"""Calibration profiles: measured model parameters per GPU, backend and kernel configuration.

A profile (``data/profiles/<gpu>.json``) holds, per backend group (``"own"`` for our kernels,
``"cublas"``, ``"cudnn"``), the launch overhead and per-configuration values of the parameters a
``KernelConfig`` leaves to calibration. Without a profile the model runs on catalogue defaults and
says so (``Prediction.calibrated`` is False). Fitting lives in ``wavemodel.fit``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from importlib import resources

from .configs import KernelConfig, own_kernels
from .gpus import GPUSpec

DEFAULT_LAUNCH_OVERHEAD_S = 2.0e-6
FITTED_FIELDS = ("efficiency", "tile_overhead_s", "single_block_speedup", "bandwidth_efficiency")


@dataclass(frozen=True)
class Profile:
    launch_overhead_s: float = DEFAULT_LAUNCH_OVERHEAD_S
    configs: dict = field(default_factory=dict, hash=False)   # config name -> {field: value}
    calibrated: bool = False

    def apply(self, cfg: KernelConfig) -> KernelConfig:
        values = self.configs.get(cfg.name)
        if not values:
            return cfg
        bad = set(values) - set(FITTED_FIELDS)
        if bad:
            raise ValueError(f"profile for {cfg.name!r}: unknown parameters {sorted(bad)}")
        return dataclasses.replace(cfg, **values)


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
    return Profile(launch_overhead_s=float(d["launch_overhead_s"]),
                   configs={k: dict(v) for k, v in d.get("configs", {}).items()}, calibrated=True)
