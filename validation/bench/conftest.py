"""GPU benchmarks: ``pytest validation --benchmark-only`` on a GPU; skipped cleanly without one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))      # import validation.* from a checkout


def gpu_frameworks() -> set[str]:
    """Frameworks that see a CUDA device here: subset of {"torch", "cupy"}."""
    found = set()
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                found.add("torch")
        except Exception:  # noqa: BLE001
            pass
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                found.add("cupy")
        except Exception:  # noqa: BLE001
            pass
    return found


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU; skipped otherwise")
    config.addinivalue_line("markers", "needs(framework): needs torch or cupy with a GPU")


def pytest_collection_modifyitems(config, items):
    have = gpu_frameworks()
    for item in items:
        need = {m.args[0] for m in item.iter_markers("needs")}
        if "gpu" in item.keywords and not have:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU (torch or CuPy with CUDA)"))
        elif need - have:
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(sorted(need - have))} with a GPU"))
