"""Noise between sessions: the same rows measured again on another day (or machine) against the dataset.

    python validation/session_noise.py validation/data/h100-sxm validation/data/h100-sxm/session2_own

Matches every row of the re-run's dataset CSVs to the committed pass-1 row of the same kernel, dtype
and shape, and prints per model backend (our kernels by name, cublas, cudnn) the absolute relative
difference: median, p90 and max, next to the committed data's own pass-2 noise floor. A model cannot
be held to a bound tighter than the noise between two sessions on the same card.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavemodel import datasets as D  # noqa: E402


def key(r: D.Row) -> tuple:
    return (r.kind, r.kernel, r.backend, r.dtype, r.shape)


def differences(base: list[D.Row], rerun: list[D.Row]) -> dict[str, np.ndarray]:
    """Per model backend: rerun / committed - 1 over the matched rows."""
    committed = {key(r): r for r in base if r.pass_ == "1"}
    out = defaultdict(list)
    for r in rerun:
        old = committed.get(key(r))
        if old is not None:
            out[r.model_backend].append(r.latency_us / old.latency_us - 1)
    return {k: np.asarray(v) for k, v in out.items()}


def pass2_differences(base: list[D.Row]) -> dict[str, np.ndarray]:
    first = {key(r): r for r in base if r.pass_ == "1"}
    out = defaultdict(list)
    for r in base:
        if r.pass_ == "2" and key(r) in first:
            out[r.model_backend].append(r.latency_us / first[key(r)].latency_us - 1)
    return {k: np.asarray(v) for k, v in out.items()}


def summary(d: np.ndarray) -> str:
    a = np.abs(d) * 100
    return (f"{a.size:5d}  {np.median(a):6.2f}  {np.percentile(a, 90):6.2f}  {a.max():6.1f}  "
            f"{np.median(d) * 100:+6.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="committed dataset folder")
    ap.add_argument("rerun", help="folder of the same sweeps measured again")
    args = ap.parse_args(argv)
    base, rerun = D.load_dir(args.data).rows, D.load_dir(args.rerun).rows
    diff, same = differences(list(base), list(rerun)), pass2_differences(list(base))
    groups = sorted(diff, key=lambda b: (b in ("cublas", "cudnn"), b))
    print("backend            | other session: n  med %   p90 %   max %  bias % "
          "| same session (pass 2): n  med %  p90 %")
    for b in groups:
        s = same.get(b)
        tail = (f"{s.size:5d}  {np.median(np.abs(s)) * 100:6.2f}  {np.percentile(np.abs(s), 90) * 100:6.2f}"
                if s is not None and s.size else "    -")
        print(f"{b:18s} | {summary(diff[b])} | {tail}")
    every = np.concatenate(list(diff.values()))
    print(f"{'all':18s} | {summary(every)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
