"""Which kernels does one library call run? Names (and CUPTI durations) through torch.profiler.

Under the profiler, every call is run ``reps`` times between two marker kernels (``torch.cuda._sleep``,
whose kernel name contains "spin" or "sleep"); the kernels between a pair of markers belong to that
call. ``parse_trace`` does the splitting on a chrome trace and is pure (tested on the CPU);
``profile_calls`` runs the device part. A call's kernel string is the ';'-joined names of one
repetition in launch order, memsets written as ``memset`` (e.g.
``memset;nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_NNT``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

REPS = 3
MARKER_CYCLES = 1000
KERNEL_CATS = ("kernel", "gpu_memset")


@dataclass(frozen=True)
class CallKernels:
    """The kernels of one call: names in launch order and summed CUPTI durations per repetition."""

    names: tuple[str, ...]
    kernel_us_reps: tuple[float, ...]
    error: str = ""
    launches: tuple[str, ...] = ()       # per kernel: "grid/block/registers/shared memory" (see launch_of)

    @property
    def kernel(self) -> str:
        return ";".join(self.names)

    @property
    def kernel_us_median(self) -> float:
        return statistics.median(self.kernel_us_reps) if self.kernel_us_reps else float("nan")


def is_marker(name: str) -> bool:
    low = name.lower()
    return "spin" in low or "sleep" in low


def event_name(e: dict) -> str:
    return "memset" if e.get("cat") == "gpu_memset" else e["name"]


def launch_of(e: dict) -> str:
    """A kernel's launch geometry from its trace args: ``GXxGYxGZ/BXxBYxBZ/r<regs>/s<smem bytes>``.

    The grid tells a split-K factor or a persistent kernel's CTA count; registers and shared memory
    give its occupancy. Empty for memsets and where the profiler recorded nothing.
    """
    a = e.get("args", {})
    grid, block = a.get("grid"), a.get("block")
    if not grid or not block:
        return ""
    return (f"{'x'.join(str(v) for v in grid)}/{'x'.join(str(v) for v in block)}"
            f"/r{a.get('registers per thread', '')}/s{a.get('shared memory', '')}")


def device_events(trace: dict) -> list[dict]:
    """Kernel and memset events of a chrome trace, in device start order."""
    evs = [e for e in trace.get("traceEvents", []) if e.get("cat") in KERNEL_CATS and e.get("ph") == "X"]
    return sorted(evs, key=lambda e: e["ts"])


def marker_groups(events: Sequence[dict]) -> list[list[dict]]:
    """The events between consecutive pairs of markers (open marker, call kernels, close marker)."""
    groups, cur, inside = [], [], False
    for e in events:
        if is_marker(e["name"]):
            if inside:
                groups.append(cur)
            cur, inside = [], not inside
            continue
        if inside:
            cur.append(e)
    return groups


def split_reps(group: Sequence[dict], reps: int) -> CallKernels:
    """One marker group holding ``reps`` repetitions of a call -> its kernel names and durations."""
    if not group:
        return CallKernels((), (), error="no kernels between markers")
    if len(group) % reps:
        # uneven: some repetition launched a different number of kernels; keep the first's names
        per = max(1, len(group) // reps)
        err = f"{len(group)} kernels for {reps} repetitions"
    else:
        per, err = len(group) // reps, ""
    chunks = [group[i * per:(i + 1) * per] for i in range(min(reps, len(group) // per))]
    names = tuple(event_name(e) for e in chunks[0])
    durs = tuple(float(sum(e.get("dur", 0.0) for e in c)) for c in chunks)
    return CallKernels(names, durs, error=err, launches=tuple(launch_of(e) for e in chunks[0]))


def parse_trace(trace: dict, n_calls: int, reps: int = REPS) -> list[CallKernels]:
    """Split a chrome trace into ``n_calls`` calls of ``reps`` repetitions each (marker-delimited)."""
    groups = marker_groups(device_events(trace))
    if len(groups) != n_calls:
        raise ValueError(f"trace: {len(groups)} marker groups for {n_calls} calls (markers lost or doubled)")
    return [split_reps(g, reps) for g in groups]


def _run_profiled(torch, profile, activity, calls, todo, reps, setup):
    with profile(activities=[activity.CUDA]) as prof:
        for i in todo:
            if setup is not None and setup[i] is not None:
                setup[i]()
            torch.cuda._sleep(MARKER_CYCLES)
            for _ in range(reps):
                calls[i]()
            torch.cuda._sleep(MARKER_CYCLES)
        torch.cuda.synchronize()
    return prof


def profile_calls(calls: Sequence[Callable[[], object] | None], *, reps: int = REPS,
                  setup: Sequence[Callable[[], object] | None] | None = None) -> list[CallKernels | None]:
    """Run each warmed-up call ``reps`` times between markers under torch.profiler.

    ``setup[i]`` (optional) runs before call ``i`` (e.g. to switch TF32 on or off); ``None`` calls are
    skipped and come back as ``None``.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    todo = [i for i, f in enumerate(calls) if f is not None]
    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        prof = _run_profiled(torch, profile, ProfilerActivity, calls, todo, reps, setup)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            trace = json.load(fh)
    finally:
        os.unlink(path)
    parsed = parse_trace(trace, len(todo), reps)
    out: list[CallKernels | None] = [None] * len(calls)
    for i, ck in zip(todo, parsed, strict=True):
        out[i] = ck
    return out
