"""validation/remeasure.py on the CPU: every selected row timed in each window, the median window kept,
every other row copied unchanged, the header kept."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import remeasure as R  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402


class FakeRunner:
    """Window w of a row with m = x measures x * (1, 1.3, 0.9)[w] us."""

    def __init__(self):
        self.calls = []
        self.placement = None
        self.placements = []       # the placement each build saw: a start offset drawn from it, or None

    def build(self, job):
        self.calls.append(job)
        self.placements.append(None if self.placement is None else self.placement.randrange(1 << 20))
        return job

    def warm(self, call):
        pass

    def time_call(self, job):
        factor = (1.0, 1.3, 0.9)[sum(1 for c in self.calls if c == job) - 1]
        t = job.shape[1] * factor
        return {"latency_us_median": t, "latency_us_p10": t, "latency_us_p90": t, "reps": 5,
                "host_overhead_us": 20.0, "launches_per_graph": 100, "rotation_sets": 4}


def test_rows_keep_their_median_window_and_others_are_copied(tmp_path):
    header = S.HEADERS["gemm"]
    rows = [dict(kernel="k1", backend="own", dtype="fp16", batch=1, m=m, n=64, k=64, latency_us_median=99,
                 latency_us_p10=99, latency_us_p90=99, reps=3, set="evaluation", group="g", **{"pass": p},
                 host_overhead_us=1, launches_per_graph=1, rotation_sets=1, kernel_us_cupti="",
                 kernel_launch="")
            for m, p in ((10, 1), (20, 1), (10, 2))]
    rows.append({**rows[0], "backend": "cublas", "kernel": "nvjet_x", "m": 30})
    data = tmp_path / "gemm_own.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    fake = FakeRunner()
    out = tmp_path / "out"
    for part in ("0/2", "1/2"):                             # one row each
        assert R.main([str(data), "--out", str(out), "--windows", "3", "--part", part], runner=fake) == 0
    assert len(fake.calls) == 6                             # two own pass-1 rows, three windows each
    assert R.main([str(data), "--out", str(out), "--windows", "3", "--combine"]) == 0
    with open(tmp_path / "out" / "gemm_own.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == header
        got = list(reader)
    assert [float(r["latency_us_median"]) for r in got] == [10.0, 20.0, 99.0, 99.0]   # median of 10, 13, 9
    assert [r["set"] for r in got] == ["evaluation"] * 4 and got[3]["backend"] == "cublas"
    logs = sorted(out.glob("gemm_own_own_windows_part*.csv"))
    assert len(logs) == 2 and sum(len(p.read_text().splitlines()) - 1 for p in logs) == 6


def test_rows_missing_a_window_stay_unchanged(tmp_path):
    header = S.HEADERS["gemm"]
    row = dict(kernel="k1", backend="own", dtype="fp16", batch=1, m=10, n=64, k=64, latency_us_median=99,
               latency_us_p10=99, latency_us_p90=99, reps=3, set="calibration", group="g", **{"pass": 1},
               host_overhead_us=1, launches_per_graph=1, rotation_sets=1, kernel_us_cupti="",
               kernel_launch="")
    data = tmp_path / "gemm_own.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerow(row)
    log = tmp_path / "log.csv"
    log.write_text("row,window," + ",".join(R.TIMING_COLUMNS) + "\n0,0,10,10,10,5,20,100,4\n")
    assert R.combine(data, [log], "own", 3, tmp_path / "out.csv") == (0, 1)
    with open(tmp_path / "out.csv", newline="") as f:
        assert float(next(csv.DictReader(f))["latency_us_median"]) == 99.0


def test_median_window_is_robust_to_one_slow_window():
    ts = [{"latency_us_median": v} for v in (100.0, 128.0, 101.0)]
    assert R.median_window(ts)["latency_us_median"] == 101.0


def test_strided_convs_rotate_over_the_bytes_they_touch():
    from wavemodel.hardware.calls import conv_touched_bytes
    from wavemodel.hardware.timing import rotation_count

    # a 1x1 stride-2 conv reads one pixel in four: a quarter of the input, all filters, the output
    d = dict(n=32, c=256, h=56, w=56, k=64, r=1, s=1, stride=2, padding=0)
    assert conv_touched_bytes(d) == 2 * (32 * 28 * 28 * 256 + 64 * 256 + 32 * 28 * 28 * 64)
    # a 3x3 stride-1 pad-1 conv reads its whole input
    d3 = dict(n=8, c=64, h=28, w=28, k=64, r=3, s=3, stride=1, padding=1)
    assert conv_touched_bytes(d3) == 2 * (8 * 28 * 28 * 64 + 64 * 9 * 64 + 8 * 28 * 28 * 64)
    l2 = 50 * 2**20
    row = {c: str(v) for c, v in d.items()}
    whole = 2 * (32 * 56 * 56 * 256 + 64 * 256 + 32 * 28 * 28 * 64)          # the old sizing
    assert R.stale_rotation(row | {"rotation_sets": str(rotation_count(whole, l2))}, "conv", l2)
    fresh = str(rotation_count(conv_touched_bytes(d), l2))
    assert not R.stale_rotation(row | {"rotation_sets": fresh}, "conv", l2)
    assert not R.stale_rotation({"rotation_sets": "1"}, "gemm", l2)          # GEMM sizing unchanged


def test_new_shapes_timed_in_windows_keep_their_median_window(tmp_path):
    """The probes' shared path (write_rate_probe, cta_sweep, stair_refine): every job timed once per
    window, one pass per window; rows of one kind written with their median window and a set."""
    jobs = [S.gemm("g", "fp16", 10, 64, 64, backend="own", kernel="k1"),
            S.conv("g", 2, 20, 16, 64, 1, 1, 0, backend="own", kernel="k2")]

    class Windows:
        passes = 0

        def measure(self, todo):
            factor = (1.0, 1.3, 0.9)[self.passes]
            self.passes += 1
            for j in todo:
                t = j.shape[1] * factor
                yield j, {"latency_us_median": t, "latency_us_p10": t, "latency_us_p90": t, "reps": 5,
                          "host_overhead_us": 20.0, "launches_per_graph": 100, "rotation_sets": 4}

    timings = R.time_in_windows(Windows(), jobs, 3)
    assert [[t["latency_us_median"] for t in ts] for ts in timings] == [[10, 13, 9], [20, 26, 18]]
    assert R.window_latencies_us(jobs, timings) == {"k1 (1, 10, 64, 64)": [10.0, 13.0, 9.0],
                                                     "k2 (2, 20, 16, 16, 64, 1, 1, 1, 0)": [20.0, 26.0, 18.0]}
    assert R.write_median_windows(tmp_path / "c.csv", "conv", jobs, timings, "probe") == 1
    with open(tmp_path / "c.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["kernel"] == "k2" and float(row["latency_us_median"]) == 20.0 and row["set"] == "probe"

    class Failing:
        def measure(self, todo):
            yield todo[0], RuntimeError("correctness check failed")

    import pytest
    with pytest.raises(RuntimeError, match="correctness"):
        R.time_in_windows(Failing(), jobs, 1)


def test_long_job_lists_are_timed_a_chunk_at_a_time():
    """runner.measure builds a chunk's buffers before timing any: time_in_windows hands it at most
    S.CHUNK jobs at once (1600 jobs at once ran the GPU out of memory), and every job keeps its own
    timing, window by window."""
    jobs = [S.gemm("g", "fp16", 8 * (i + 1), 64, 64, backend="own", kernel="k")
            for i in range(2 * S.CHUNK + 5)]

    class Chunked:
        sizes: list = []
        window = 0

        def measure(self, todo):
            self.sizes.append(len(todo))
            for j in todo:
                yield j, {"latency_us_median": j.shape[1] + 1000 * self.window}
            if j is jobs[-1]:
                self.window += 1

    timings = R.time_in_windows(Chunked(), jobs, 2)
    assert max(Chunked.sizes) == S.CHUNK and sum(Chunked.sizes) == 2 * len(jobs)
    assert [[t["latency_us_median"] for t in ts] for ts in timings] == [[j.shape[1], j.shape[1] + 1000]
                                                                        for j in jobs]


def test_probes_stay_out_of_the_datasets_and_write_their_windows(tmp_path):
    """held_out refuses a committed row; time_and_write writes each kind present, the windows and the log
    of every timing."""
    import json

    import pytest
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "gemm_own.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=S.HEADERS["gemm"])
        w.writeheader()
        w.writerow({c: "" for c in S.HEADERS["gemm"]}
                   | {"kernel": "k1", "batch": 1, "m": 10, "n": 64, "k": 64})
    fresh = [S.gemm("g", "fp16", 12, 64, 64, backend="own", kernel="k1")]
    assert R.held_out(fresh, data) == fresh
    with pytest.raises(ValueError, match="already in"):
        R.held_out([S.gemm("g", "fp16", 10, 64, 64, backend="own", kernel="k1")] + fresh, data)

    class Runner:
        def measure(self, todo):
            for j in todo:
                yield j, {"latency_us_median": 7.0, "latency_us_p10": 7.0, "latency_us_p90": 7.0, "reps": 5,
                          "host_overhead_us": 20.0, "launches_per_graph": 100, "rotation_sets": 4}

        def environment(self, command):
            return {"command": command}

    out = tmp_path / "out"
    R.time_and_write(out, fresh, 2, {"gemm": "g.csv", "conv": "c.csv"}, "probe", "env.json",
                     {"set": "probe"}, runner=Runner())
    assert sorted(p.name for p in out.iterdir()) == ["env.json", "env_windows.csv", "g.csv"]   # no conv
    #                                                                        job, no conv file; the log
    env = json.loads((out / "env.json").read_text())
    assert env["windows"] == 2 and env["set"] == "probe"
    assert env["window_latencies_us"] == {"k1 (1, 12, 64, 64)": [7.0, 7.0]}


def test_placements_give_each_window_its_own_seeded_placement(tmp_path):
    header = S.HEADERS["gemm"]
    rows = [dict(kernel="k1", backend="own", dtype="fp16", batch=1, m=m, n=64, k=64, latency_us_median=99,
                 latency_us_p10=99, latency_us_p90=99, reps=3, set="evaluation", group="g", **{"pass": 1},
                 host_overhead_us=1, launches_per_graph=1, rotation_sets=1, kernel_us_cupti="",
                 kernel_launch="") for m in (10, 20)]
    data = tmp_path / "gemm_own.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    runs = []
    for flag in ([], ["--placements"], ["--placements"]):
        fake = FakeRunner()
        out = tmp_path / f"out{len(runs)}"
        assert R.main([str(data), "--out", str(out), "--windows", "3", *flag], runner=fake) == 0
        with open(next(out.glob("*_windows_part0of1.csv")), newline="") as f:
            seeds = [r["placement_seed"] for r in csv.DictReader(f)]
        runs.append((fake.placements, seeds))
    assert runs[0] == ([None] * 6, [""] * 6)                    # off: the allocation order decides
    drawn, seeds = runs[1]
    assert seeds == ["0:0", "1:0", "0:1", "1:1", "0:2", "1:2"]   # rows within windows, as timed
    assert len(set(drawn)) == 6 and runs[2] == runs[1]          # a placement per window, reproducible


def test_runner_layout_offsets_buffers_only_with_a_placement():
    import random

    from wavemodel.hardware.calls import ALIGN_BYTES, PLACEMENT_SPAN_BYTES, Runner

    runner = Runner()
    assert runner._layout(3, (10, 100), 2) == (3 * 1024, 0, 1024)    # 1000 elements, 512-byte sets
    starts = set()
    for seed in range(20):
        runner.placement = random.Random(seed)
        total, start, stride = runner._layout(3, (10, 100), 2)
        assert stride == 1024 and total == start + 3 * 1024
        assert start % (ALIGN_BYTES // 2) == 0 and 0 <= start < PLACEMENT_SPAN_BYTES // 2
        starts.add(start)
    assert len(starts) == 20


def test_an_interrupted_timing_run_resumes_from_its_log(tmp_path):
    """time_and_write appends every timing to its window log as it is taken: a run killed part-way (here
    in window 1, after some jobs) keeps them, and the same call again times only the missing (job,
    window) pairs, then writes the same rows as a run that was never interrupted."""
    import json

    import pytest
    jobs = [S.gemm("g", "fp16", 8 * (i + 1), 64, 64, backend="own", kernel="k") for i in range(S.CHUNK + 7)]

    class Clock:
        """Window w of a job with m = x measures x * (1, 1.3, 0.9)[w] us; dies after ``fail_after``."""

        def __init__(self, fail_after=None):
            self.timed, self.fail_after = [], fail_after

        def measure(self, todo):
            for j in todo:
                if self.fail_after is not None and len(self.timed) == self.fail_after:
                    raise KeyboardInterrupt
                window = sum(1 for t in self.timed if t == j)
                # a resumed run starts with the windows the log holds
                window += sum(1 for k, _ in done if k == R.job_key(j))
                self.timed.append(j)
                t = j.shape[1] * (1.0, 1.3, 0.9)[window]
                yield j, {"latency_us_median": t, "latency_us_p10": t, "latency_us_p90": t, "reps": 5,
                          "host_overhead_us": 20.0, "launches_per_graph": 100, "rotation_sets": 4}

        def environment(self, command):
            return {"command": command}

    def run(out, runner):
        R.time_and_write(out, jobs, 3, {"gemm": "g.csv"}, "probe", "g_env.json", runner=runner)

    done: set = set()
    whole = Clock()
    run(tmp_path / "whole", whole)
    assert len(whole.timed) == 3 * len(jobs)

    cut = tmp_path / "cut"
    first = Clock(fail_after=len(jobs) + 5)             # window 0 done, 5 jobs into window 1
    with pytest.raises(KeyboardInterrupt):
        run(cut, first)
    log = R.window_log(cut, "g_env.json")
    assert log.name == "g_windows.csv" and not (cut / "g.csv").exists()
    done = set(R.read_log(log))
    assert len(done) == len(jobs) + 5 and {w for _, w in done} == {0, 1}
    second = Clock()
    run(cut, second)
    assert len(second.timed) == 3 * len(jobs) - len(done)            # nothing timed twice
    assert (cut / "g.csv").read_text() == (tmp_path / "whole" / "g.csv").read_text()
    env = json.loads((cut / "g_env.json").read_text())
    assert env["window_latencies_us"] == json.loads((tmp_path / "whole" / "g_env.json").read_text())[
        "window_latencies_us"]
    assert len(R.read_log(log)) == 3 * len(jobs)
    with pytest.raises(ValueError, match="same job twice"):
        R.time_in_windows(Clock(), jobs + jobs[:1], 1)
