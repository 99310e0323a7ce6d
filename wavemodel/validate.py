"""Model against measurement: per-family errors, the issues' error bounds, and the staircase check.

Pure (no files, no printing): ``evaluate`` predicts every measured row with ``predict_latency``
(the GPU's shipped profile, or the profiles given) and keeps what the staircase check needs (tiles,
waves, tiles on the busiest SM, K iterations, the configuration); ``family_stats`` summarises the
relative errors ``predicted / measured - 1`` per reporting family (``datasets.family_of``);
``failures`` lists the bounds a table exceeds; ``staircase_violations`` lists the measured jumps the
model does not explain.

Bounds (issues 3 and 4, on the evaluation set): our kernels (``own_*``) median <= 3 % and p90 <= 8 %;
8-aligned cuBLAS GEMMs median <= 5 % and p90 <= 15 %; misaligned cuBLAS median <= 15 %; cuDNN
convolutions median <= 10 %.

Staircase check (issue 3): along every staircase group (``group`` starting with "stair"), rows of one
model backend and dtype that differ only in the swept dimension form a series; between consecutive
measured points (sorted by that dimension) whose measured latency rises by more than
``STAIR_RISE`` the model must put a boundary: its tiles, waves, tiles on the busiest SM, K
iterations or chosen configuration differ between the two points. A rise that the model predicts
without a boundary (a memory-bound call whose traffic grows with the swept dimension), to within
``STAIR_RISE`` of the measured rise, is a smooth trend the model has, not a step it missed, and is
not a violation either.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import calibration
from .datasets import SHAPE_COLUMNS, Row, family_of, group_rows
from .gpus import GPUSpec
from .latency import predict_latency
from .shapes import Conv2d
from .waves import ceil_div

STAIR_RISE = 0.05
WITHIN = 0.10


@dataclass(frozen=True)
class Bound:
    median_pct: float
    p90_pct: float | None = None

    def __str__(self) -> str:
        return f"med<={self.median_pct:g}" + (f" p90<={self.p90_pct:g}" if self.p90_pct is not None else "")


OWN_BOUND = Bound(3.0, 8.0)
BOUNDS = {"cublas_aligned": Bound(5.0, 15.0), "cublas_misaligned": Bound(15.0), "cudnn": Bound(10.0)}


def bound_for(family: str) -> Bound | None:
    """The issues' bound for a reporting family (every ``own_*`` family shares one); None if none."""
    if family.startswith("own_"):
        return OWN_BOUND
    return BOUNDS.get(family)


# ------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class FamilyStats:
    family: str
    n: int
    median_pct: float           # median |predicted / measured - 1|, percent
    mean_pct: float
    p90_pct: float
    within_10_share: float      # share of rows with |error| <= 10 %, in [0, 1]
    bias_pct: float             # median signed error, percent (> 0: the model is slow)
    bound: Bound | None

    @property
    def failed(self) -> list[str]:
        """The parts of the bound this family exceeds (empty when it passes or has no bound)."""
        b, out = self.bound, []
        if b is None or self.n == 0:
            return out
        if self.median_pct > b.median_pct:
            out.append(f"median {self.median_pct:.2f}% > {b.median_pct:g}%")
        if b.p90_pct is not None and self.p90_pct > b.p90_pct:
            out.append(f"p90 {self.p90_pct:.2f}% > {b.p90_pct:g}%")
        return out

    @property
    def status(self) -> str:
        if self.bound is None:
            return "-"
        return "FAIL" if self.failed else "PASS"


def error_stats(family: str, relative_error) -> FamilyStats:
    """Statistics of one family's relative errors (``predicted / measured - 1``)."""
    e = np.asarray(relative_error, dtype=float).ravel()
    if e.size == 0:
        nan = float("nan")
        return FamilyStats(family, 0, nan, nan, nan, nan, nan, bound_for(family))
    a = np.abs(e)
    return FamilyStats(family=family, n=int(e.size), median_pct=100 * float(np.median(a)),
                       mean_pct=100 * float(np.mean(a)), p90_pct=100 * float(np.percentile(a, 90)),
                       within_10_share=float(np.mean(a <= WITHIN)), bias_pct=100 * float(np.median(e)),
                       bound=bound_for(family))


def family_stats(families: Sequence[str], relative_error) -> list[FamilyStats]:
    """One ``FamilyStats`` per family (sorted by name) of the rows' relative errors."""
    fam = np.asarray(families, dtype=object)
    e = np.asarray(relative_error, dtype=float)
    if fam.shape != e.shape:
        raise ValueError(f"families, relative_error: lengths differ ({fam.size} vs {e.size})")
    return [error_stats(f, e[fam == f]) for f in sorted(set(fam.tolist()))]


def failures(stats: Sequence[FamilyStats]) -> list[str]:
    """``"family: what failed"`` for every family past its bound."""
    return [f"{s.family}: {'; '.join(s.failed)}" for s in stats if s.failed]


def match_families(present: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """Families of ``present`` matching any of ``patterns`` (names or shell patterns such as own_*);
    ValueError for a pattern that matches none."""
    present = sorted(set(present))
    if not patterns:
        return present
    chosen = set()
    for p in patterns:
        hit = fnmatch.filter(present, p)
        if not hit:
            raise ValueError(f"--families: {p!r} matches no family in the data; "
                             f"present: {', '.join(present)}")
        chosen.update(hit)
    return sorted(chosen)


# --------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Model predictions for measured rows (arrays aligned with ``rows``)."""

    rows: tuple[Row, ...]
    families: tuple[str, ...]
    measured_s: np.ndarray
    predicted_s: np.ndarray
    tiles: np.ndarray
    waves: np.ndarray
    busiest_tiles: np.ndarray      # tiles the busiest SM runs over the whole call
    k_iters: np.ndarray            # main-loop iterations of one tile (K tiles per split)
    config: tuple[str, ...]        # configuration the model runs
    calibrated: np.ndarray         # whether a measured profile set the parameters

    @property
    def relative_error(self) -> np.ndarray:
        return self.predicted_s / self.measured_s - 1.0

    def subset(self, keep) -> Evaluation:
        idx = np.flatnonzero(np.asarray(keep))
        take = lambda seq: tuple(seq[i] for i in idx)  # noqa: E731
        return Evaluation(take(self.rows), take(self.families), self.measured_s[idx], self.predicted_s[idx],
                          self.tiles[idx], self.waves[idx], self.busiest_tiles[idx], self.k_iters[idx],
                          take(self.config), self.calibrated[idx])


def _per_row(value, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value), (n,)).copy()


def evaluate(rows: Sequence[Row], gpu: GPUSpec, profiles: Mapping[str, calibration.Profile] | None = None
             ) -> Evaluation:
    """Predict every row (grouped and vectorised). ``profiles`` maps a profile group ("own", "cublas",
    "cudnn") to the profile to use; groups not in it (or ``profiles=None``) use the shipped profile."""
    rows = tuple(rows)
    if not rows:
        raise ValueError("rows: nothing to evaluate (no measured rows selected)")
    index = {id(r): i for i, r in enumerate(rows)}
    n = len(rows)
    out = {k: np.zeros(n) for k in ("predicted_s", "measured_s")}
    ints = {k: np.zeros(n, dtype=np.int64) for k in ("tiles", "waves", "busiest_tiles", "k_iters")}
    calibrated = np.zeros(n, dtype=bool)
    config = [""] * n
    for members, group in group_rows(rows):
        profile = (profiles or {}).get(calibration.group_of(group.backend))
        p = predict_latency(group.shape, gpu, group.backend, profile=profile)
        idx = np.array([index[id(r)] for r in members])
        m = len(members)
        out["predicted_s"][idx] = _per_row(p.latency_s, m)
        out["measured_s"][idx] = group.measured_s
        configs = list(np.atleast_1d(p.config))
        configs = configs * m if len(configs) == 1 else configs
        tiles, waves = _per_row(p.tiles, m), _per_row(p.waves, m)
        bps, size = _per_row(p.blocks_per_sm, m), _per_row(p.wave_size, m)
        tail = np.rint(_per_row(p.tail_utilization, m) * size).astype(np.int64)
        ints["tiles"][idx], ints["waves"][idx] = tiles, waves
        ints["busiest_tiles"][idx] = (waves - 1) * bps + ceil_div(tail, gpu.sm_count)
        g = group.shape.gemm() if isinstance(group.shape, Conv2d) else group.shape
        tile_k = np.array([c.tile_k for c in configs])
        split_k = np.array([c.split_k for c in configs])
        ints["k_iters"][idx] = ceil_div(ceil_div(_per_row(g.k, m), split_k), tile_k)
        calibrated[idx] = p.calibrated
        for i, c in zip(idx, configs, strict=True):
            config[i] = c.name
    return Evaluation(rows, tuple(family_of(r) for r in rows), out["measured_s"], out["predicted_s"],
                      **ints, config=tuple(config), calibrated=calibrated)


# ---------------------------------------------------------------------------------------- staircases


@dataclass(frozen=True)
class Series:
    """Points of one staircase: rows of one model backend, dtype and group that differ only in ``dim``."""

    backend: str
    dtype: str
    group: str
    dim: str
    fixed: tuple[tuple[str, int], ...]      # the other shape columns and their values
    x: np.ndarray                           # distinct values of ``dim``, ascending
    index: tuple[tuple[int, ...], ...]      # per x, the evaluation rows measured there

    @property
    def label(self) -> str:
        fixed = " ".join(f"{k}={v}" for k, v in self.fixed)
        return f"{self.backend} {self.dtype} {self.group} ({fixed})"


def swept_dimension(shapes: Sequence[tuple[int, ...]], columns: Sequence[str]) -> int:
    """Index of the column that varies along the staircase: leaving it out splits the shapes into the
    fewest series (ties: the column with more distinct values)."""
    best, key = 0, None
    for d in range(len(columns)):
        series = len({s[:d] + s[d + 1:] for s in shapes})
        distinct = len({s[d] for s in shapes})
        k = (series, -distinct)
        if key is None or k < key:
            best, key = d, k
    return best


def staircase_series(rows: Sequence[Row], prefix: str = "stair") -> list[Series]:
    """Every staircase series among ``rows`` (index positions refer to ``rows``)."""
    by_group: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.group.startswith(prefix):
            by_group.setdefault((r.model_backend, r.dtype, r.group, r.kind), []).append(i)
    out = []
    for (backend, dtype, group, kind), idx in sorted(by_group.items()):
        columns = SHAPE_COLUMNS[kind]
        d = swept_dimension([rows[i].shape for i in idx], columns)
        series: dict[tuple, dict[int, list[int]]] = {}
        for i in idx:
            s = rows[i].shape
            series.setdefault(s[:d] + s[d + 1:], {}).setdefault(s[d], []).append(i)
        for rest, points in sorted(series.items()):
            fixed = tuple(zip(columns[:d] + columns[d + 1:], rest, strict=True))
            xs = sorted(points)
            out.append(Series(backend, dtype, group, columns[d], fixed, np.array(xs),
                              tuple(tuple(points[x]) for x in xs)))
    return out


@dataclass(frozen=True)
class Violation:
    series: str
    dim: str
    x_before: int
    x_after: int
    measured_us_before: float
    measured_us_after: float
    predicted_us_before: float
    predicted_us_after: float

    @property
    def rise(self) -> float:
        return self.measured_us_after / self.measured_us_before - 1.0


def _medians(ev: Evaluation, s: Series) -> tuple[list[float], list[float]]:
    """Measured and predicted seconds per point of ``s`` (median over the rows measured there)."""
    return ([float(np.median(ev.measured_s[list(ix)])) for ix in s.index],
            [float(np.median(ev.predicted_s[list(ix)])) for ix in s.index])


def _boundary_key(ev: Evaluation, i: int) -> tuple:
    return (int(ev.tiles[i]), int(ev.waves[i]), int(ev.busiest_tiles[i]), int(ev.k_iters[i]), ev.config[i])


def staircase_violations(ev: Evaluation, series: Sequence[Series], rise: float = STAIR_RISE
                         ) -> list[Violation]:
    """Consecutive points of a series whose measured latency rises by more than ``rise`` with no model
    boundary between them and no predicted rise within ``rise`` of the measured one. A point measured
    several times uses the median of its rows."""
    out = []
    for s in series:
        measured, predicted = _medians(ev, s)
        keys = [_boundary_key(ev, ix[0]) for ix in s.index]
        for j in range(1, len(s.index)):
            measured_rise = measured[j] / measured[j - 1] - 1
            predicted_rise = predicted[j] / predicted[j - 1] - 1
            if (measured_rise > rise and keys[j] == keys[j - 1]
                    and predicted_rise < measured_rise - rise):
                out.append(Violation(s.label, s.dim, int(s.x[j - 1]), int(s.x[j]), measured[j - 1] * 1e6,
                                     measured[j] * 1e6, predicted[j - 1] * 1e6, predicted[j] * 1e6))
    return out


def count_jumps(ev: Evaluation, series: Sequence[Series], rise: float = STAIR_RISE) -> int:
    """Measured rises of more than ``rise`` between consecutive points, explained or not."""
    n = 0
    for s in series:
        measured, _ = _medians(ev, s)
        n += sum(b > a * (1 + rise) for a, b in zip(measured[:-1], measured[1:], strict=True))
    return n
