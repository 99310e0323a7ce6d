"""SM clock and board power while the GPU works, read through NVML (``pynvml``, from nvidia-ml-py).

A long compute-bound kernel on an H100 SXM can run into the board's power limit, and the card then
lowers its SM clock: the same kernel takes longer than at the boost clock. A timing that records the
clock and power it ran at says which regime it measured. ``ClockSampler`` reads both every
``interval_s`` on a background thread while a ``with`` block runs (the reads cost a few microseconds
of host time and none of the GPU's); ``summary()`` gives their means and extremes. Without NVML
(no driver, no package) every figure is NaN and nothing fails: clocks are a record, not a requirement.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

Reading = tuple[float, float]       # (SM clock in MHz, board power in W)


def nvml_reader(device_index: int = 0) -> Callable[[], Reading] | None:
    """A function that reads (SM MHz, power W) of one device, or None where NVML is not usable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:  # noqa: BLE001 - no package, no driver, no device: no clock record
        return None

    def read() -> Reading:
        return (float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
                pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
    return read


@dataclass(frozen=True)
class ClockSummary:
    samples: int
    sm_mhz_mean: float
    sm_mhz_min: float
    power_w_mean: float
    power_w_max: float


NO_READINGS = ClockSummary(0, math.nan, math.nan, math.nan, math.nan)


def summarize(readings: list[Reading]) -> ClockSummary:
    if not readings:
        return NO_READINGS
    mhz = [r[0] for r in readings]
    watts = [r[1] for r in readings]
    return ClockSummary(len(readings), sum(mhz) / len(mhz), min(mhz), sum(watts) / len(watts), max(watts))


class ClockSampler:
    """``with ClockSampler(read) as s: ...`` then ``s.summary()``: readings taken every ``interval_s``
    while the block ran (at least one, at its end). ``read=None`` records nothing (NaN summary)."""

    def __init__(self, read: Callable[[], Reading] | None, interval_s: float = 0.005):
        if interval_s <= 0:
            raise ValueError(f"interval_s: must be > 0, got {interval_s}")
        self._read, self._interval_s = read, interval_s
        self._readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._readings.append(self._read())

    def __enter__(self) -> ClockSampler:
        self._readings = []
        self._stop.clear()
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._readings.append(self._read())

    def summary(self) -> ClockSummary:
        return summarize(self._readings)

