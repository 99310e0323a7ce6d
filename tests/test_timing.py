"""The timing harness' logic, on the CPU, with a fake backend whose device and host clocks are scripted."""

from __future__ import annotations

import contextlib
import math

import pytest

from wavemodel.hardware import timing as T


class FakeGPU:
    """A one-stream device: eager launches and graph replays run in order; events read its clock.

    ``cost(i)`` is the device time of call ``i``; ``host_s`` the host time of one eager launch (the
    device idles until the host has enqueued it). ``replay_scale`` scales successive replays (noise).
    """

    name = "fake"

    def __init__(self, cost, host_s=20e-6, replay_scale=None, replay_host_s=5e-6):
        self.cost, self.host_s, self.replay_host_s = cost, host_s, replay_host_s
        self.replay_scale = list(replay_scale or [])
        self.host_t = 0.0
        self.dev_t = 0.0
        self.capturing = None
        self.eager = []          # indices run eagerly
        self.replayed = []       # indices run inside replays, one list per replay
        self.captures = []       # launch counts of each capture
        self.reads = []          # (start, end) event pairs whose elapsed time was read

    # the user's launch(i) calls this
    def launch(self, i):
        if self.capturing is not None:
            self.capturing.append(i)
            return
        self.host_t += self.host_s
        self.dev_t = max(self.dev_t, self.host_t) + self.cost(i)
        self.eager.append(i)

    # Backend protocol
    def stream(self):
        return contextlib.nullcontext()

    def synchronize(self):
        self.host_t = max(self.host_t, self.dev_t)

    def record(self):
        self.dev_t = max(self.dev_t, self.host_t)
        return self.dev_t

    def elapsed_s(self, start, end):
        self.reads.append((start, end))
        return end - start

    def capture(self, body):
        assert self.capturing is None
        self.capturing = []
        body()
        items, self.capturing = self.capturing, None
        self.captures.append(len(items))

        def replay():
            scale = self.replay_scale.pop(0) if self.replay_scale else 1.0
            self.host_t += self.replay_host_s
            self.dev_t = max(self.dev_t, self.host_t) + scale * sum(self.cost(i) for i in items)
            self.replayed.append(list(items))
        return replay

    def clock(self):
        return self.host_t


def run(fake, **kw):
    kw.setdefault("budget_s", 0.25)
    return T.time_device(fake.launch, backend=fake, **kw)


# ------------------------------------------------------------------------------------------ pure logic


def test_launches_for_targets_replay_length_and_clamps():
    assert T.launches_for(10e-6) == 150                       # 1.5 ms / 10 µs
    assert T.launches_for(1e-3) == T.MIN_LAUNCHES             # long kernels: at least 5
    assert T.launches_for(1e-9) == T.MAX_LAUNCHES
    assert T.launches_for(0.0) == T.MAX_LAUNCHES
    assert T.launches_for(float("nan")) == T.MIN_LAUNCHES
    assert T.launches_for(10e-6, target_replay_s=2e-3) == 200


def test_launches_for_is_a_multiple_of_the_rotation():
    assert T.launches_for(10e-6, rotate=64) == 192            # 150 rounded up to 3 x 64
    assert T.launches_for(1e-3, rotate=7) == 7                # at least one full cycle
    assert T.launches_for(1e-3, rotate=11) == T.MIN_LAUNCHES   # 11 ms cycle: too long, cycle partly
    assert T.launches_for(300e-6, rotate=156) == T.MIN_LAUNCHES
    assert T.launches_for(1e-9, rotate=300) == 1800           # largest multiple under the cap
    assert T.launches_for(1e-9, rotate=5000) == T.MAX_LAUNCHES
    with pytest.raises(ValueError, match="rotate"):
        T.launches_for(1e-6, rotate=0)


def test_replays_for_budget():
    assert T.replays_for(0.25, 1.5e-3) == 166
    assert T.replays_for(0.001, 1.5e-3) == T.MIN_REPS
    assert T.replays_for(10.0, 1e-3) == T.MAX_REPS
    assert T.replays_for(0.05, 10e-3, min_reps=3) == 5
    with pytest.raises(ValueError, match="budget_s"):
        T.replays_for(-1, 1e-3)


def test_quantiles_match_numpy_linear():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.5]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert T.quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))
    t = T.summarize(xs, 10, 2e-5)
    assert (t.p10_s, t.median_s, t.p90_s, t.reps) == pytest.approx(
        (np.quantile(xs, 0.1), np.median(xs), np.quantile(xs, 0.9), 7))
    with pytest.raises(ValueError):
        T.quantile([], 0.5)


def test_rotation_count():
    l2 = 50 * 2**20
    assert T.rotation_count(4 * l2, l2) == 1                 # one set already exceeds 2 x L2
    assert T.rotation_count(l2, l2) == 3                     # 3 x L2 > 2 x L2
    assert T.rotation_count(2 * l2, l2) == 2                 # must *exceed* the factor
    assert T.rotation_count(2**20, l2) == 101
    assert T.rotation_count(1024, l2) == 256                 # tiny shapes: capped
    assert T.rotation_count(1024, l2, max_sets=16) == 16
    assert T.rotation_count(l2, l2, factor=0) == 1
    for b in (1, 1000, 10**6, 10**8):
        n = T.rotation_count(b, l2, max_sets=10**9)
        assert n * b > 2 * l2 and (n - 1) * b <= 2 * l2
    with pytest.raises(ValueError, match="bytes_per_call"):
        T.rotation_count(0, l2)


# -------------------------------------------------------------------------------------- harness (fake)


def test_steady_kernel_median_is_device_time_not_host_time():
    fake = FakeGPU(cost=lambda i: 3e-6, host_s=20e-6)          # host-bound when called eagerly
    t = run(fake)
    assert t.median_s == pytest.approx(3e-6)
    assert t.p10_s == pytest.approx(3e-6) and t.p90_s == pytest.approx(3e-6)
    assert t.host_overhead_s == pytest.approx(20e-6)
    assert t.launches_per_graph == 500                           # 1.5 ms / 3 µs after refinement
    assert len(t.samples_s) == t.reps == T.replays_for(0.25, 500 * 3e-6)


def test_warmup_is_never_timed():
    warm = 3
    fake = FakeGPU(cost=lambda i: 1.0 if i < warm else 10e-6)    # autotuning makes warm-up slow
    t = run(fake, warmup=warm)
    assert fake.eager[:warm] == [0, 1, 2]
    assert t.median_s == pytest.approx(10e-6)
    # a timed replay is its launches plus at most one host gap (5 us) spread over them; a warm-up
    # call (1 s) in it would show as a sample of seconds
    assert max(t.samples_s) <= 10e-6 + fake.replay_host_s / t.launches_per_graph + 1e-15
    assert all(i >= warm for rep in fake.replayed for i in rep)
    # every event interval read lies after the warm-up finished on the device
    assert min(a for a, _ in fake.reads) >= 1.0 * warm


def test_launches_per_graph_adapts_to_kernel_time():
    counts = {}
    for cost in (1e-6, 2e-6, 10e-6, 100e-6, 1e-3, 20e-3):
        counts[cost] = run(FakeGPU(cost=lambda i, c=cost: c), budget_s=0.05).launches_per_graph
    assert counts[1e-6] == 1500 and counts[2e-6] == 750 and counts[10e-6] == 150
    assert counts[1e-3] == counts[20e-3] == T.MIN_LAUNCHES
    # 100 µs: the eager estimate (120 µs with the launch gap) gave 13; close enough to 15 to keep
    assert counts[100e-6] == 13
    for cost, n in counts.items():
        if n > T.MIN_LAUNCHES:
            assert T.TARGET_REPLAY_S / T.RECAPTURE_RATIO <= n * cost <= T.TARGET_REPLAY_S * T.RECAPTURE_RATIO


def test_probe_graph_is_recaptured_when_eager_estimate_was_host_bound():
    fake = FakeGPU(cost=lambda i: 2e-6, host_s=30e-6)
    t = run(fake)
    assert fake.captures[0] < fake.captures[-1] == t.launches_per_graph == 750
    fake = FakeGPU(cost=lambda i: 500e-6, host_s=30e-6)          # eager estimate already good
    t = run(fake)
    assert fake.captures == [T.MIN_LAUNCHES]


def test_explicit_launches_per_graph_is_kept():
    fake = FakeGPU(cost=lambda i: 5e-6)
    t = run(fake, launches_per_graph=37)
    assert t.launches_per_graph == 37 and fake.captures == [37]
    assert t.median_s == pytest.approx(5e-6)
    with pytest.raises(ValueError, match="launches_per_graph"):
        run(FakeGPU(cost=lambda i: 5e-6), launches_per_graph=0)


def test_budget_sets_replay_count():
    reps = {b: run(FakeGPU(cost=lambda i: 10e-6), budget_s=b).reps for b in (0.0, 0.03, 0.15, 10.0)}
    assert reps == {0.0: T.MIN_REPS, 0.03: 20, 0.15: 100, 10.0: T.MAX_REPS}


def test_noisy_replays_give_quantiles():
    timed = [1.0, 1.1, 0.9, 1.5, 1.0, 1.2, 0.95, 1.05, 1.0, 1.3]
    fake = FakeGPU(cost=lambda i: 100e-6, replay_scale=[1.0] * 4 + timed, replay_host_s=0.0)
    t = run(fake, budget_s=0.0, min_reps=10, max_reps=10)
    assert len(fake.replayed) == 14           # upload, probe, the two-replay length check, then 10 timed
    # every launch of a replay is the same kernel, so each sample is scale x 100 µs
    assert [round(s / 100e-6, 6) for s in t.samples_s] == timed
    assert t.median_s == pytest.approx(T.quantile([s * 100e-6 for s in timed], 0.5))
    assert t.p10_s < t.median_s < t.p90_s


def test_a_graph_too_short_to_hide_its_launch_gap_is_grown():
    """A 2 us kernel whose every replay waits 200 us for the host: per-launch estimates read off short
    graphs stay inflated; the harness must grow the graph until the gap is amortised."""
    fake = FakeGPU(cost=lambda i: 2e-6, host_s=40e-6, replay_host_s=200e-6)
    t = run(fake, launches_per_graph=None)
    assert t.launches_per_graph * 2e-6 >= T.TARGET_REPLAY_S / 2
    assert t.median_s == pytest.approx(2e-6, rel=0.3)            # at most 200 us over >= 375 launches


def test_rotation_makes_every_replay_cycle_all_sets():
    sets = 48
    fake = FakeGPU(cost=lambda i: 4e-6)
    t = run(fake, rotate=sets)
    assert t.launches_per_graph % sets == 0
    for rep in fake.replayed:
        assert sorted({i % sets for i in rep}) == list(range(sets))


def test_scripted_events():
    """A backend whose events return scripted times: samples are exactly the scripted replays / count."""

    class Scripted(FakeGPU):
        def __init__(self, script):
            super().__init__(cost=lambda i: 0.0)
            self.script = list(script)

        def elapsed_s(self, start, end):
            return self.script.pop(0)

    # eager estimate 1 ms -> 5 launches; probe replay 5 ms -> 5 launches; two replays confirm the
    # graph is long enough (>= half the 1.5 ms target); then 5 timed replays
    be = Scripted([1e-3, 5e-3, 5e-3, 5e-3, 5e-3, 6e-3, 4e-3, 5.5e-3, 7e-3])
    t = T.time_device(be.launch, backend=be, budget_s=0.0)
    assert t.launches_per_graph == 5 and t.reps == 5
    assert t.samples_s == pytest.approx((1e-3, 1.2e-3, 0.8e-3, 1.1e-3, 1.4e-3))
    assert t.median_s == pytest.approx(1.1e-3)
    assert not be.script


def test_host_overhead_can_be_skipped_and_warmup_zero():
    fake = FakeGPU(cost=lambda i: 10e-6)
    t = run(fake, warmup=0, host_calls=0)
    assert math.isnan(t.host_overhead_s)
    assert t.median_s == pytest.approx(10e-6)


def test_unknown_framework():
    with pytest.raises(ValueError, match="framework"):
        T.make_backend("jax")


def test_package_imports_without_gpu_frameworks():
    import importlib
    import sys

    for mod in ("wavemodel.hardware.timing", "wavemodel.hardware.profiler"):
        importlib.import_module(mod)
    assert "torch" not in sys.modules or sys.modules["torch"] is not None


def test_graph_replayer_replays_one_graph_per_call():
    fake = FakeGPU(cost=lambda i: 10e-6)
    run_once = T.graph_replayer(fake.launch, 40, backend=fake, warmup=2)
    assert fake.eager == [0, 1] and fake.captures == [40] and len(fake.replayed) == 1
    t0 = fake.host_t
    run_once()
    assert len(fake.replayed) == 2 and fake.host_t - t0 == pytest.approx(40 * 10e-6 + 5e-6)
