import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def median_window_rows(tmp_path):
    """``rows(dataset, logs, windows)``: ``remeasure.combine`` of the logs into the dataset, then the
    pass-1 rows of our kernels; also (re-timed rows, selected rows)."""
    sys.path.insert(0, str(ROOT))
    from validation import remeasure

    def rows(dataset: Path, logs: list[Path], windows: int) -> tuple[list[dict], tuple[int, int]]:
        out = tmp_path / dataset.name
        counts = remeasure.combine(dataset, logs, "own", windows, out)
        with open(out, newline="") as f:
            return [r for r in csv.DictReader(f) if r["backend"] == "own" and r["pass"] == "1"], counts
    return rows
