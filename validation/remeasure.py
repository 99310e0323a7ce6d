"""Time a committed dataset's rows again in several separate windows and keep each row's median.

    PYTHONPATH=. python validation/remeasure.py validation/data/h100-sxm/gemm_own.csv --out DIR
           [--backend own|cublas|cudnn] [--windows 3] [--part 0/2] [--deadline-s 540] [--placements]
    python validation/remeasure.py validation/data/h100-sxm/gemm_own.csv --out DIR --combine

The sweep times a row once, in one ~20 ms window (``--budget-s``). A transient slow state of the card
that lasts longer than that window is invisible inside it (the row's p10 and p90 stay tight) but
makes the whole row slow: in the H100 own-kernel data, pass 1 and pass 2 of the same tensor-core
rows differ by up to 28 %, and timing those rows again four times in a row
(validation/clock_probe.py, validation/data/h100-sxm/clock_probe.csv) reproduces pass 2 within 2 %,
at a steady 1980 MHz SM clock. Here every selected row (``--backend``, pass 1) is timed ``--windows``
times, one full pass over the rows per window (minutes apart), and the row keeps the window with the
median latency: one slow window out of three cannot move it. With ``--placements`` each window also
puts the row's buffers somewhere else in memory (``Runner.placement``): some shapes' latency depends on
where their data lie, by up to 18 % (validation/data/h100-sxm/placements/), and the rows then keep
the median over placements instead of the one placement that the file's order of allocations gives them.

On the GPU it appends every window's timing to ``DIR/<stem>_<backend>_windows_part<i>of<n>.csv``
(``--part i/n`` times one contiguous chunk of the rows, so a long file fits several runs); then, on
any machine, ``--combine`` writes ``DIR/<name>``: the dataset's header and rows, each pass-1 row of
``--backend`` with its median window where all windows finished (the rest unchanged, and counted).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavemodel.hardware import calibration_sweep as S  # noqa: E402

TIMING_COLUMNS = ("latency_us_median", "latency_us_p10", "latency_us_p90", "reps", "host_overhead_us",
                  "launches_per_graph", "rotation_sets")


def kind_of(header) -> str:
    return "conv" if "stride" in header else "gemm"


def job_of(row: dict, kind: str) -> S.Job:
    cols = S.SHAPE_COLUMNS[kind]
    kernel = row["kernel"] if row["backend"] == "own" else ""      # a library picks its own kernel
    return S.Job(kind, row["backend"], kernel, row["dtype"], tuple(int(row[c]) for c in cols), row["group"])


def median_window(timings: list[dict]) -> dict:
    """The window whose median latency is the median of the windows' (the lower middle for an even count)."""
    ranked = sorted(timings, key=lambda t: float(t["latency_us_median"]))
    return ranked[(len(ranked) - 1) // 2]


# ---- new shapes timed in windows (the probes: write_rate_probe, cta_sweep, stair_refine, and
# extra_calibration --backend own), logged as they are timed so that a rerun resumes ----


def committed_own_shapes(data_dir: Path) -> set[tuple]:
    """(kernel, *shape) of every row of our kernels' committed datasets (gemm_own.csv, conv_own.csv)."""
    seen = set()
    for kind, name in (("gemm", "gemm_own.csv"), ("conv", "conv_own.csv")):
        path = Path(data_dir) / name
        if path.exists():
            with open(path, newline="") as f:
                cols = S.SHAPE_COLUMNS[kind]
                seen |= {(r["kernel"], *(int(r[c]) for c in cols)) for r in csv.DictReader(f)}
    return seen


def held_out(jobs: list[S.Job], data_dir: Path) -> list[S.Job]:
    """``jobs``, after checking that none is a committed dataset row (a probe must stay out of both sets)."""
    seen = committed_own_shapes(data_dir)
    clash = [j for j in jobs if (j.kernel, *j.shape) in seen]
    if clash:
        raise ValueError(f"shapes already in {data_dir}: {clash[:3]}")
    return jobs


def time_and_write(out: Path, jobs: list[S.Job], windows: int, files: dict[str, str], set_name: str,
                   env_name: str, env_extra: dict | None = None, runner=None) -> None:
    """Time ``jobs`` in ``windows`` windows and write, under ``out``, each kind's rows with their median
    window (``files``: kind -> CSV name, kinds with no job skipped) and the environment record
    ``env_name`` with every window's latencies.

    Every timing is appended to ``out/<env_name's stem>_windows.csv`` as soon as it is taken
    (``window_log``): a run cut short (a device call's time limit, a crash) loses nothing, and the same
    command run again times only the (job, window) pairs that log lacks before writing the rows."""
    if runner is None:
        from wavemodel.hardware.calls import Runner

        runner = Runner()
    out.mkdir(parents=True, exist_ok=True)
    timings = time_in_windows(runner, jobs, windows, log=window_log(out, env_name))
    for kind, name in files.items():
        if any(j.kind == kind for j in jobs):
            write_median_windows(out / name, kind, jobs, timings, set_name)
    env = runner.environment(" ".join(sys.argv)) | {
        "windows": windows, "kept": "each shape's median window", **(env_extra or {}),
        "window_latencies_us": window_latencies_us(jobs, timings)}
    (out / env_name).write_text(json.dumps(env, indent=1) + "\n")


LOG_COLUMNS = ("job", "window", "timing")


def probe_main(argv, doc: str, write_predictions, time_rows, compare) -> int:
    """The command line of a probe (``validation/parity_probe.py``, ``line_probe.py``): ``predict --out
    DIR`` writes the model's predictions before the run, ``time --out DIR [--windows N]`` times the rows
    on a GPU, ``compare DIR`` prints them against the predictions."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("predict").add_argument("--out", type=Path, required=True)
    t = sub.add_parser("time")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--windows", type=int, default=3)
    sub.add_parser("compare").add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "predict":
        print(f"wrote {write_predictions(args.out)}")
    elif args.cmd == "time":
        time_rows(args.out, args.windows)
    else:
        compare(args.folder)
    return 0


def window_log(out: Path, env_name: str) -> Path:
    """The log ``time_and_write`` appends every timing to: ``<env_name's stem, less _env>_windows.csv``."""
    stem = Path(env_name).stem
    return out / f"{stem.removesuffix('_env')}_windows.csv"


def job_key(job: S.Job) -> str:
    """A job's name in the window log: kind, backend, kernel, dtype and shape (the group is not timed)."""
    return f"{job.kind} {job.backend} {job.kernel} {job.dtype} {' '.join(map(str, job.shape))}"


def read_log(log: Path | None) -> dict[tuple[str, int], dict]:
    """(job key, window) -> timing, from a window log (empty where there is none yet)."""
    if log is None or not log.exists():
        return {}
    with open(log, newline="") as f:
        return {(r["job"], int(r["window"])): json.loads(r["timing"]) for r in csv.DictReader(f)}


def _plain(value):
    """A numpy scalar as its Python value, for the log's JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def time_in_windows(runner, jobs: list[S.Job], windows: int, log: Path | None = None) -> list[list[dict]]:
    """Per job, its timing in each of ``windows`` windows, one full pass over ``jobs`` per window
    (``runner.measure``, ``S.CHUNK`` jobs at a time: it builds a chunk's buffers before timing them, and
    a whole long list's would not fit in GPU memory); raises on the first job that fails (its correctness
    check included). With ``log``, each timing is appended there as it is taken, and the (job, window)
    pairs the log already holds are not timed again (a resumed run finishes the window it stopped in,
    then goes on)."""
    keys = [job_key(j) for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("jobs: the same job twice")
    done = read_log(log)
    new = log is not None and not log.exists()
    with open(log, "a", newline="") if log is not None else contextlib.nullcontext() as f:
        w = csv.writer(f, lineterminator="\n") if f else None
        if new:
            w.writerow(LOG_COLUMNS)
        for window in range(windows):
            todo = [j for j, k in zip(jobs, keys, strict=True) if (k, window) not in done]
            for start in range(0, len(todo), S.CHUNK):
                for job, result in runner.measure(todo[start:start + S.CHUNK]):
                    if isinstance(result, BaseException):
                        raise RuntimeError(f"{job}: {result}") from result
                    done[(job_key(job), window)] = result
                    if w:
                        w.writerow([job_key(job), window, json.dumps(result, default=_plain)])
                        f.flush()
            print(f"window {window + 1}/{windows}: {len(todo)} of {len(jobs)} shapes timed"
                  + (f" ({len(jobs) - len(todo)} from {log.name})" if len(todo) < len(jobs) else ""),
                  file=sys.stderr, flush=True)
    return [[done[(k, window)] for window in range(windows)] for k in keys]


def window_latencies_us(jobs: list[S.Job], timings: list[list[dict]]) -> dict:
    """Every window's median latency per job, for the environment record."""
    return {f"{j.kernel} {j.shape}": [round(float(t["latency_us_median"]), 4) for t in ts]
            for j, ts in zip(jobs, timings, strict=True)}


def write_median_windows(path: Path, kind: str, jobs: list[S.Job], timings: list[list[dict]],
                         set_name: str) -> int:
    """Write the ``kind`` jobs as dataset rows (each its median window, set ``set_name``); the count."""
    mine = [i for i, j in enumerate(jobs) if j.kind == kind]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=S.HEADERS[kind], lineterminator="\n")
        w.writeheader()
        for i in mine:
            w.writerow(S.make_row(jobs[i], median_window(timings[i])) | {"set": set_name})
    return len(mine)


def todo_rows(rows: list[dict], backend: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r["backend"] == backend and r["pass"] == "1"]


def stale_rotation(row: dict, kind: str, l2_bytes: int, factor: float = 2.0, max_sets: int = 256) -> bool:
    """Whether the harness now rotates a row's inputs over more sets than it was timed with: a
    convolution's sets are sized by the bytes it touches (``calls.conv_touched_bytes``), no longer by
    its whole input, so a strided conv's working set no longer fits in the L2."""
    if kind != "conv":
        return False
    from wavemodel.hardware.calls import conv_touched_bytes
    from wavemodel.hardware.timing import rotation_count

    d = {c: int(row[c]) for c in S.SHAPE_COLUMNS["conv"]}
    return int(row["rotation_sets"]) < rotation_count(conv_touched_bytes(d), l2_bytes, factor, max_sets)


def read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def placement_seed(row: int, window: int) -> str:
    """The seed of a row's buffer placement in one window (``--placements``)."""
    return f"{row}:{window}"


def measure(path: Path, log: Path, backend: str, windows: int, part: tuple[int, int], runner,
            deadline: float, only_stale_rotation: bool = False, placements: bool = False) -> int:
    """Time part ``part = (i, n)`` (the i-th of n contiguous chunks) of the file's selected rows in each
    window, appending (row, window, timing) to ``log``; returns the rows timed in every window.
    ``only_stale_rotation``: only the rows ``stale_rotation`` picks. ``placements``: each window of a
    row places its buffers afresh (``runner.placement``, seeded by ``placement_seed``)."""
    header, rows = read(path)
    kind = kind_of(header)
    todo = todo_rows(rows, backend)
    if only_stale_rotation:
        todo = [r for r in todo if stale_rotation(rows[r], kind, runner.l2_bytes, runner.factor,
                                                   runner.max_sets)]
        print(f"{path.name} {backend}: {len(todo)} rows timed with fewer rotated sets than the harness "
              "now uses", file=sys.stderr, flush=True)
    i, n = part
    todo = todo[len(todo) * i // n:len(todo) * (i + 1) // n]
    counts = dict.fromkeys(todo, 0)
    new = not log.exists()
    with open(log, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["row", "window", *TIMING_COLUMNS, "placement_seed"])
        for window in range(windows):
            for k, r in enumerate(todo):
                if time.monotonic() > deadline:
                    break
                seed = placement_seed(r, window) if placements else ""
                runner.placement = random.Random(seed) if placements else None
                call = runner.build(job_of(rows[r], kind))
                runner.warm(call)
                t = runner.time_call(call)
                del call
                counts[r] += 1
                w.writerow([r, window, *(t[c] for c in TIMING_COLUMNS), seed])
                f.flush()
                if k % 500 == 0:
                    print(f"{path.name} {backend} window {window}: {k}/{len(todo)} rows", file=sys.stderr,
                          flush=True)
    return sum(c == windows for c in counts.values())


def read_windows(logs: list[Path]) -> dict[int, list[dict]]:
    """Row number -> its window records from ``measure``'s logs, in log order."""
    timings: dict[int, list[dict]] = {}
    for log in logs:
        with open(log, newline="") as f:
            for t in csv.DictReader(f):
                timings.setdefault(int(t["row"]), []).append(t)
    return timings


def combine(path: Path, logs: list[Path], backend: str, windows: int, out: Path) -> tuple[int, int]:
    """Write ``out``: ``path``'s rows, each selected row with its median window where it has all
    ``windows`` of them in ``logs`` (else unchanged). Returns (re-timed rows, selected rows)."""
    header, rows = read(path)
    timings = read_windows(logs)
    todo = set(todo_rows(rows, backend))
    done = 0
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for i, r in enumerate(rows):
            if i in todo and len(timings.get(i, ())) >= windows:
                best = median_window(timings[i][:windows])
                num = {c: float(best[c]) if c.startswith(("latency", "host")) else int(float(best[c]))
                       for c in TIMING_COLUMNS if c in header}
                r = {**r, **{c: S.fmt(v) for c, v in num.items()}}
                done += 1
            w.writerow(r)
    return done, len(todo)


def main(argv=None, runner=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="committed dataset CSVs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="own")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--part", default="0/1", help="i/n: time only the i-th of n chunks of the rows")
    ap.add_argument("--deadline-s", type=float, default=540.0, help="stop starting rows after this long")
    ap.add_argument("--stale-rotation", action="store_true",
                    help="only rows the harness would now rotate over more input sets (strided convs)")
    ap.add_argument("--placements", action="store_true",
                    help="each window places the row's buffers afresh: its median is over placements")
    ap.add_argument("--combine", nargs="*", metavar="LOG", default=None,
                    help="no GPU: write DIR/<name> from these window logs "
                         "(default: DIR/<stem>_<backend>_windows*.csv)")
    args = ap.parse_args(argv)
    if args.windows < 1:
        ap.error("--windows: must be >= 1")
    try:
        part = tuple(int(x) for x in args.part.split("/"))
        if len(part) != 2 or not 0 <= part[0] < part[1]:
            raise ValueError
    except ValueError:
        ap.error(f"--part: expected i/n with 0 <= i < n, got {args.part!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in map(Path, args.data):
        stem = f"{path.stem}_{args.backend}_windows"
        if args.combine is not None:
            logs = [Path(p) for p in args.combine] or sorted(out.glob(f"{stem}*.csv"))
            done, total = combine(path, logs, args.backend, args.windows, out / path.name)
            print(f"{path.name}: {done} of {total} {args.backend} rows re-timed in {args.windows} windows "
                  f"(the rest unchanged)", file=sys.stderr, flush=True)
            continue
        if runner is None:
            from wavemodel.hardware.calls import Runner

            runner = Runner()
        deadline = time.monotonic() + args.deadline_s
        log = out / f"{stem}_part{part[0]}of{part[1]}.csv"
        done = measure(path, log, args.backend, args.windows, part, runner, deadline, args.stale_rotation,
                       args.placements)
        print(f"{path.name} {args.backend} part {args.part}: {done} rows timed in all {args.windows} windows",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
