"""Device-time harness: CUDA-graph replays timed with CUDA events; host overhead measured apart.

One Python call to ``torch.mm`` or ``cupy.matmul`` costs 15-35 µs of host time, more than a small kernel
runs, so back-to-back Python calls time the host, not the GPU. ``time_device`` instead

1. warms up with ``warmup`` eager calls (cuDNN autotunes here; none of it is timed),
2. estimates the device time per call (one eager call between events: an upper bound),
3. measures the host overhead of one eager call (perf_counter around back-to-back enqueues),
4. captures a probe graph sized from that estimate, times one replay, and recaptures if the refined
   estimate asks for a different size: ``launches_per_graph`` calls, one replay ~1.5 ms, at least 5,
5. replays it ``reps`` times (set by the time budget, 5..200) with an event pair around each replay,

and returns the per-call time of each replay (replay time / launches_per_graph) with its median and
p10/p90. ``launch(i)`` enqueues the i-th call on the current stream; the caller rotates its input sets
by ``i`` (``rotation_count`` says how many sets make the working set exceed twice the L2), and passing
``rotate=`` makes every graph cycle through all sets (when one cycle lasts at most 10 ms).

Seen on an H100 SXM (CUDA 13, torch 2.11): torch.mm fp16 256^3 times 3.24 µs per call here (CUPTI
kernel time 2.59 µs; the rest is the gap between graph nodes) against 24.8 µs per call for eager calls
timed back to back; 4096^3 times 183.5 µs (CUPTI 179.8 µs, memset + kernel). Long budgets keep the
chip loaded: the same 4096^3 GEMM read 183.8 / 185.5 / 200.8 µs with budgets of 0.02 / 0.1 / 0.25 s,
so sweeps use short budgets (0.02 s) and report p10/p90.

The arithmetic (launch count, replays, quantiles, rotation) is pure and tested on the CPU; the device
calls go through a small backend (torch or CuPy) that tests replace with a fake one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TARGET_REPLAY_S = 1.5e-3     # one graph replay should last about this long
MIN_LAUNCHES = 5
MAX_LAUNCHES = 2000
MIN_REPS = 5
MAX_REPS = 200
HOST_CALLS = 20              # eager calls timed for the host overhead
RECAPTURE_RATIO = 1.25       # recapture the probe graph when the wanted launch count differs this much
HOST_DEVICE_S = 2e-3         # the host-overhead calls stop at about this much device work
MAX_REPLAY_S = 10e-3         # a graph cycles through all rotated input sets only if that fits in this
UPLOAD_REPLAY_BELOW_S = 5e-3  # an untimed first replay (graph upload) for graphs shorter than this


@dataclass(frozen=True)
class Timing:
    """Device time of one call; ``samples_s`` holds the per-call time of every timed replay."""

    median_s: float
    p10_s: float
    p90_s: float
    reps: int
    launches_per_graph: int
    samples_s: tuple[float, ...]
    host_overhead_s: float          # wall time of one eager Python call's enqueue (not in median_s)
    estimate_s: float = math.nan    # first per-call estimate the launch count was chosen from
    framework: str = "torch"

    @property
    def median_us(self) -> float:
        return self.median_s * 1e6


# ---------------------------------------------------------------------------------------------- logic


def launches_for(estimate_s: float, target_replay_s: float = TARGET_REPLAY_S,
                 min_launches: int = MIN_LAUNCHES, max_launches: int = MAX_LAUNCHES, rotate: int = 1,
                 max_replay_s: float = MAX_REPLAY_S) -> int:
    """Calls to capture in one graph so a replay lasts ~``target_replay_s``.

    At least ``min_launches`` and at most ``max_launches``; a multiple of ``rotate`` (so every replay
    cycles through all input sets) whenever ``rotate <= max_launches`` and a full cycle of sets lasts
    at most ``max_replay_s`` (a long kernel on small inputs would otherwise replay for 100s of ms;
    its inputs are then cycled partly, over the graph's launches).
    """
    if min_launches < 1 or max_launches < min_launches:
        raise ValueError(f"min_launches/max_launches: need 1 <= min <= max, "
                         f"got {min_launches}, {max_launches}")
    if rotate < 1:
        raise ValueError(f"rotate: must be >= 1, got {rotate}")
    if not estimate_s > 0 or not math.isfinite(estimate_s):
        n = max_launches if estimate_s == 0 else min_launches
    else:
        n = math.ceil(target_replay_s / estimate_s - 1e-9)
    n = max(min_launches, min(max_launches, n))
    if rotate > 1 and math.isfinite(estimate_s) and rotate * estimate_s > max_replay_s:
        return n
    if rotate > 1:
        if rotate > max_launches:
            return max_launches
        n = max(rotate, math.ceil(n / rotate) * rotate)
        if n > max_launches:
            n = max_launches // rotate * rotate
    return n


def replays_for(budget_s: float, replay_s: float, min_reps: int = MIN_REPS, max_reps: int = MAX_REPS) -> int:
    """Timed replays that fit ``budget_s`` when one replay lasts ``replay_s``, within [min_reps, max_reps]."""
    if budget_s < 0:
        raise ValueError(f"budget_s: must be >= 0, got {budget_s}")
    if min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"min_reps/max_reps: need 1 <= min <= max, got {min_reps}, {max_reps}")
    if not replay_s > 0 or not math.isfinite(replay_s):
        return max_reps if replay_s == 0 else min_reps
    return max(min_reps, min(max_reps, math.floor(budget_s / replay_s + 1e-9)))


def quantile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), ``q`` in [0, 1]."""
    if not samples:
        raise ValueError("samples: need at least one sample")
    if not 0 <= q <= 1:
        raise ValueError(f"q: must be in [0, 1], got {q}")
    xs = sorted(samples)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float], launches_per_graph: int, host_overhead_s: float,
              estimate_s: float = math.nan, framework: str = "torch") -> Timing:
    return Timing(median_s=quantile(samples_s, 0.5), p10_s=quantile(samples_s, 0.1),
                  p90_s=quantile(samples_s, 0.9), reps=len(samples_s), launches_per_graph=launches_per_graph,
                  samples_s=tuple(samples_s), host_overhead_s=host_overhead_s, estimate_s=estimate_s,
                  framework=framework)


def rotation_count(bytes_per_call: int, l2_bytes: int, factor: float = 2.0, max_sets: int = 256) -> int:
    """Input sets to rotate so the working set (sets * bytes_per_call) exceeds ``factor`` x L2.

    Capped at ``max_sets`` (tiny shapes would need thousands; their operands stay in L2 in real use too).
    """
    if bytes_per_call < 1:
        raise ValueError(f"bytes_per_call: must be >= 1, got {bytes_per_call}")
    if l2_bytes < 0 or factor < 0:
        raise ValueError(f"l2_bytes/factor: must be >= 0, got {l2_bytes}, {factor}")
    if max_sets < 1:
        raise ValueError(f"max_sets: must be >= 1, got {max_sets}")
    need = math.floor(factor * l2_bytes / bytes_per_call) + 1
    return max(1, min(max_sets, need))


# ------------------------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What the harness needs from a GPU framework (all work on one stream)."""

    name: str

    def stream(self) -> Any: ...                      # context manager making the harness stream current
    def synchronize(self) -> None: ...
    def record(self) -> Any: ...                      # record an event on the current stream, return it
    def elapsed_s(self, start: Any, end: Any) -> float: ...
    def capture(self, body: Callable[[], None]) -> Callable[[], None]: ...   # returns replay()
    def clock(self) -> float: ...                     # host clock, seconds


class TorchBackend:
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch
        self._stream = torch.cuda.Stream()

    def stream(self):
        self._stream.wait_stream(self.torch.cuda.current_stream())
        return self.torch.cuda.stream(self._stream)

    def synchronize(self):
        self.torch.cuda.synchronize()

    def record(self):
        ev = self.torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def elapsed_s(self, start, end):
        return start.elapsed_time(end) * 1e-3

    def capture(self, body):
        # capture_begin/end on the harness stream rather than ``torch.cuda.graph``, whose entry empties
        # the caching allocator (every row would then cudaMalloc its inputs again)
        graph = self.torch.cuda.CUDAGraph()
        self._stream.synchronize()
        graph.capture_begin()
        try:
            body()
        except BaseException:
            with contextlib.suppress(Exception):
                graph.capture_end()
            raise
        graph.capture_end()
        return graph.replay

    def clock(self):
        return time.perf_counter()


class CupyBackend:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cupy = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)

    def stream(self):
        return self._stream

    def synchronize(self):
        self._stream.synchronize()

    def record(self):
        return self._stream.record(self.cupy.cuda.Event())

    def elapsed_s(self, start, end):
        return self.cupy.cuda.get_elapsed_time(start, end) * 1e-3

    def capture(self, body):
        s = self._stream
        s.synchronize()
        s.begin_capture()
        try:
            body()
        except BaseException:
            with contextlib.suppress(Exception):
                s.end_capture()
            raise
        graph = s.end_capture()
        graph.upload(s)
        return lambda: graph.launch(s)

    def clock(self):
        return time.perf_counter()


def make_backend(framework: str) -> Backend:
    if framework == "torch":
        return TorchBackend()
    if framework == "cupy":
        return CupyBackend()
    raise ValueError(f"framework: {framework!r} is not one of torch, cupy")


# -------------------------------------------------------------------------------------------- harness


GROW_ATTEMPTS = 4


def _time_replays(be: Backend, replay: Callable[[], None], reps: int) -> list[float]:
    events = [be.record()]
    for _ in range(reps):
        replay()
        events.append(be.record())
    be.synchronize()
    return [be.elapsed_s(a, b) for a, b in zip(events[:-1], events[1:], strict=True)]


def _capture(be: Backend, launch: Callable[[int], Any], start: int, count: int) -> Callable[[], None]:
    def body():
        for j in range(count):
            launch(start + j)
    return be.capture(body)


def host_overhead(be: Backend, launch: Callable[[int], Any], start: int, calls: int = HOST_CALLS) -> float:
    """Host wall time per eager call: back-to-back enqueues timed with the host clock, no sync inside."""
    be.synchronize()
    t0 = be.clock()
    for j in range(calls):
        launch(start + j)
    t1 = be.clock()
    be.synchronize()
    return (t1 - t0) / calls


def time_device(launch: Callable[[int], Any], *, budget_s: float = 0.25, warmup: int = 3,
                launches_per_graph: int | None = None, framework: str = "torch", rotate: int = 1,
                target_replay_s: float = TARGET_REPLAY_S, min_launches: int = MIN_LAUNCHES,
                max_launches: int = MAX_LAUNCHES, min_reps: int = MIN_REPS, max_reps: int = MAX_REPS,
                host_calls: int = HOST_CALLS, backend: Backend | None = None) -> Timing:
    """Device time per call of ``launch(i)`` (see the module docstring); ``backend`` is for tests."""
    be = backend if backend is not None else make_backend(framework)
    i = 0
    with be.stream():
        for _ in range(warmup):                      # untimed: autotuning, module loading, first touches
            launch(i)
            i += 1
        be.synchronize()
        e0 = be.record()                             # eager estimate: device time + launch gap (upper bound)
        launch(i)
        i += 1
        e1 = be.record()
        be.synchronize()
        eager = be.elapsed_s(e0, e1)
        # host overhead: up to host_calls eager calls, fewer for long kernels (~2 ms of device work)
        n_host = min(host_calls, max(3, math.ceil(HOST_DEVICE_S / eager))) if eager > 0 else host_calls
        host_s = host_overhead(be, launch, i, n_host) if host_calls > 0 else math.nan
        i += max(n_host, 0) if host_calls > 0 else 0
        if launches_per_graph is None:
            count = launches_for(eager, target_replay_s, min_launches, max_launches, rotate)
            replay = _capture(be, launch, i, count)
            if count * eager < UPLOAD_REPLAY_BELOW_S:
                replay()                             # graph upload, untimed (negligible for long graphs)
            (probe,) = _time_replays(be, replay, 1)
            estimate = probe / count
            wanted = launches_for(estimate, target_replay_s, min_launches, max_launches, rotate)
            if not count / RECAPTURE_RATIO <= wanted <= count * RECAPTURE_RATIO:
                count = wanted
                replay = _capture(be, launch, i, count)
                replay()
            # A short graph measures its own launch gap: an estimate read off one will not correct
            # itself. Grow the graph until a replay really lasts half the target (measured H100 rows
            # with 15-launch, 0.2 ms replays read 10 us for a 2 us kernel).
            probe = min(_time_replays(be, replay, 2))
            for _ in range(GROW_ATTEMPTS):
                if probe >= target_replay_s / 2 or count >= max_launches:
                    break
                count = launches_for(probe / count / 2, target_replay_s, min_launches, max_launches, rotate)
                replay = _capture(be, launch, i, count)
                replay()
                probe = min(_time_replays(be, replay, 2))
            estimate = probe / count
        else:
            count = int(launches_per_graph)
            if count < 1:
                raise ValueError(f"launches_per_graph: must be >= 1, got {launches_per_graph}")
            replay = _capture(be, launch, i, count)
            replay()
            (probe,) = _time_replays(be, replay, 1)
            estimate = probe / count
        reps = replays_for(budget_s, estimate * count, min_reps, max_reps)
        replay_s = _time_replays(be, replay, reps)
    return summarize([t / count for t in replay_s], count, host_s, estimate, be.name)


def graph_replayer(launch: Callable[[int], Any], launches_per_graph: int, *, framework: str = "torch",
                   warmup: int = 3, backend: Backend | None = None) -> Callable[[], None]:
    """A function that replays a graph of ``launches_per_graph`` calls once and waits for it.

    For wall-clock tools (pytest-benchmark): one replay + synchronize, so the host cost of a Python
    call is paid once per graph, not once per call. ``time_device`` remains the device-time figure.
    """
    be = backend if backend is not None else make_backend(framework)
    with be.stream():
        for i in range(warmup):
            launch(i)
        be.synchronize()
        replay = _capture(be, launch, warmup, launches_per_graph)
        replay()
        be.synchronize()

    def run() -> None:
        with be.stream():
            replay()
            be.synchronize()
    return run
