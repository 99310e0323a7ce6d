"""The device side of validation/sweep.py: build each row's call with rotated inputs, read the library's
kernel names through the profiler, check our kernels once, and time everything with time_device.

The call builders and the runner live in the package (``wavemodel.hardware.calls``, shipped in the
wheel for ``wavemodel calibrate --measure``); this module re-exports them for the sweeps and turns a
failed correctness check into the sweep's ``SkipRow`` (the kernel is measured again on the next run).
"""

from __future__ import annotations

from validation.sweep import SkipRow
from wavemodel.hardware import calls
from wavemodel.hardware.calls import (  # noqa: F401 - re-exported for the sweeps and the bench
    ALIGN_BYTES,
    CHECK_CONVS,
    CHECK_GEMMS,
    CHECK_GEMMS_ANY,
    IN_BYTES,
    OUT_BYTES,
    WARM_CALLS,
    Call,
    KernelCheckFailed,
    own_configs,
    own_registry,
)


class Runner(calls.Runner):
    """``wavemodel.hardware.calls.Runner`` whose failed kernel checks raise the sweep's SkipRow."""

    def build(self, job) -> Call:
        try:
            return super().build(job)
        except KernelCheckFailed as e:
            raise SkipRow(str(e)) from None
