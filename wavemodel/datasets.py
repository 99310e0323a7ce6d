"""Measured datasets (``validation/data/<gpu>/*.csv``, DESIGN.md section 5): rows, selection, groups.

A dataset CSV has one row per measured shape: ``kernel, backend, dtype``, the shape columns
(``batch, m, n, k`` for a GEMM; ``n, c, h, w, k, r, s, stride, padding`` for a convolution),
``latency_us_median`` and the sweep's extra columns (``set``: calibration | evaluation, assigned by a
hash of the shape; ``group``: stair_n, random_aligned, ...; ``pass``: 1, or 2 for the noise-floor
repeat; ``launches_per_graph``; ...). Files of another schema (discovery_*.csv, occupancy.csv) are
not datasets and are skipped by ``load_dir``, which says so.

``group_rows`` turns rows into ``wavemodel.fit.Group`` objects: one vectorised ``Gemm`` / ``Conv2d``
per (model backend, dtype, kind), where the model backend of one of our kernels is its name
(``predict_latency(shape, gpu, backend=NAME)``) and a library row's is ``cublas`` / ``cudnn``.

Rows whose CUDA-graph replay lasted under ``MIN_REPLAY_US`` (``launches_per_graph *
latency_us_median``) come from an earlier harness that stopped growing short graphs; their
latencies include graph launch gaps. ``drop_short_replays`` separates them so callers report how
many they left out.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fit import Group
from .shapes import Conv2d, Gemm

GEMM_COLUMNS = ("batch", "m", "n", "k")
CONV_COLUMNS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding")
SHAPE_COLUMNS = {"gemm": GEMM_COLUMNS, "conv": CONV_COLUMNS}
REQUIRED = ("kernel", "backend", "dtype", "latency_us_median")
LIBRARIES = ("cublas", "cudnn")
BACKENDS = ("own", *LIBRARIES)
SETS = ("calibration", "evaluation")
MIN_REPLAY_US = 500.0
ALIGN_ELEMENTS = 8          # cuBLAS runs its fast kernels when the dimensions are multiples of 8


@dataclass(frozen=True)
class Row:
    """One measured call. ``shape`` holds the shape columns of ``kind`` in SHAPE_COLUMNS order."""

    kind: str                       # "gemm" | "conv"
    kernel: str                     # our kernel's name, or the library's kernel names (';'-joined)
    backend: str                    # "own" | "cublas" | "cudnn"
    dtype: str
    shape: tuple[int, ...]
    latency_us: float               # median device time of one call
    set: str = ""                   # "calibration" | "evaluation" | "" (not assigned)
    group: str = ""
    pass_: str = "1"
    launches_per_graph: int = 0     # 0: not recorded
    source: str = ""                # file the row came from

    @property
    def dims(self) -> dict[str, int]:
        return dict(zip(SHAPE_COLUMNS[self.kind], self.shape, strict=True))

    @property
    def model_backend(self) -> str:
        """What ``predict_latency(backend=...)`` takes: our kernel's name, or cublas / cudnn."""
        return self.kernel if self.backend == "own" else self.backend

    @property
    def replay_us(self) -> float:
        """Duration of one timed graph replay (nan when the launch count was not recorded)."""
        return self.launches_per_graph * self.latency_us if self.launches_per_graph else math.nan


@dataclass(frozen=True)
class Loaded:
    rows: tuple[Row, ...]
    files: tuple[str, ...]                                  # dataset files read
    skipped: tuple[str, ...] = ()                           # CSVs without the dataset schema
    counts: dict = field(default_factory=dict, hash=False)  # file name -> rows read


# ------------------------------------------------------------------------------------------ reading


def kind_of_header(header: Sequence[str]) -> str | None:
    """"gemm" or "conv" when ``header`` has the dataset columns of that kind, else None."""
    cols = set(header)
    if not set(REQUIRED) <= cols:
        return None
    if set(CONV_COLUMNS) <= cols:
        return "conv"
    if set(GEMM_COLUMNS) <= cols:
        return "gemm"
    return None


def _int(value: str, column: str, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: column {column!r}: expected an integer, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{where}: column {column!r}: expected an integer, got {value!r}")
    return int(number)


def row_from_dict(d: dict, kind: str, where: str = "row", source: str = "") -> Row:
    """A ``Row`` from one CSV record; ValueError naming ``where`` and the column for a bad value."""
    backend = d["backend"]
    if backend not in BACKENDS:
        raise ValueError(f"{where}: backend {backend!r} is not one of {', '.join(BACKENDS)}")
    try:
        latency = float(d["latency_us_median"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: column 'latency_us_median': expected a number, "
                         f"got {d['latency_us_median']!r}") from None
    if not latency > 0 or not math.isfinite(latency):
        raise ValueError(f"{where}: column 'latency_us_median': must be a positive number, got {latency}")
    if backend == "own" and not d["kernel"]:
        raise ValueError(f"{where}: an own row needs its kernel's name in column 'kernel'")
    shape = tuple(_int(d[c], c, where) for c in SHAPE_COLUMNS[kind])
    lpg = d.get("launches_per_graph") or ""
    return Row(kind=kind, kernel=d["kernel"], backend=backend, dtype=d["dtype"], shape=shape,
               latency_us=latency, set=d.get("set") or "", group=d.get("group") or "",
               pass_=str(d.get("pass") or "1"), launches_per_graph=_int(lpg, "launches_per_graph", where)
               if lpg else 0, source=source)


def read_csv(path) -> list[Row]:
    """Rows of one dataset CSV; ValueError if it lacks the dataset columns or holds a bad value."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        kind = kind_of_header(reader.fieldnames or ())
        if kind is None:
            raise ValueError(f"{path}: not a dataset: needs the columns {', '.join(REQUIRED)} and the "
                             f"shape columns of a GEMM ({', '.join(GEMM_COLUMNS)}) or a conv "
                             f"({', '.join(CONV_COLUMNS)})")
        return [row_from_dict(d, kind, f"{path}:{i}", path.name) for i, d in enumerate(reader, start=2)]


def load_dir(data_dir) -> Loaded:
    """Every dataset CSV directly in ``data_dir`` (sorted by name); other CSVs are listed as skipped."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"DATA_DIR: {root} is not a directory")
    rows, files, skipped, counts = [], [], [], {}
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if kind_of_header(header) is None:
            skipped.append(path.name)
            continue
        got = read_csv(path)
        rows += got
        files.append(path.name)
        counts[path.name] = len(got)
    if not files:
        raise ValueError(f"DATA_DIR: no dataset CSV in {root} (expected files such as gemm_cublas.csv)")
    return Loaded(tuple(rows), tuple(files), tuple(skipped), counts)


# ---------------------------------------------------------------------------------------- selection


def select(rows: Iterable[Row], *, set: str | None = None, pass_: str | None = "1",
           backends: Sequence[str] | None = None) -> list[Row]:
    """Rows of one ``set`` (None: any), one ``pass_`` (None: any) and the given backends ("own",
    "cublas", "cudnn"; None: all)."""
    if set is not None and set not in SETS:
        raise ValueError(f"set: {set!r} is not one of {', '.join(SETS)}")
    if backends is not None:
        bad = [b for b in backends if b not in BACKENDS]
        if bad:
            raise ValueError(f"backend: {', '.join(bad)} not one of {', '.join(BACKENDS)}")
    return [r for r in rows
            if (set is None or r.set == set) and (pass_ is None or r.pass_ == str(pass_))
            and (backends is None or r.backend in backends)]


def is_short_replay(row: Row, min_replay_us: float = MIN_REPLAY_US) -> bool:
    """True when the row's timed graph replay lasted under ``min_replay_us`` (a harness failure)."""
    return bool(row.launches_per_graph) and row.replay_us < min_replay_us


def drop_short_replays(rows: Iterable[Row], min_replay_us: float = MIN_REPLAY_US
                       ) -> tuple[list[Row], list[Row]]:
    """(kept, dropped): rows whose graph replay lasted under ``min_replay_us`` are dropped."""
    kept, dropped = [], []
    for r in rows:
        (dropped if is_short_replay(r, min_replay_us) else kept).append(r)
    return kept, dropped


# ------------------------------------------------------------------------------------------ families


def own_family(kernel: str) -> str:
    """``own_`` + our kernel's name without its tile suffix: simt_f32_128x64 -> own_simt_f32."""
    head, _, tail = kernel.rpartition("_")
    base = head if head and "x" in tail and tail.replace("x", "").isdigit() else kernel
    return f"own_{base}"


def family_of(row: Row) -> str:
    """Reporting family: own_<kernel family>, cublas_aligned / cublas_misaligned, or cudnn."""
    if row.backend == "own":
        return own_family(row.kernel)
    if row.backend == "cublas":
        d = row.dims
        aligned = all(d[x] % ALIGN_ELEMENTS == 0 for x in ("m", "n", "k"))
        return "cublas_aligned" if aligned else "cublas_misaligned"
    return row.backend


# ------------------------------------------------------------------------------------------- groups


def shape_of(rows: Sequence[Row]) -> Gemm | Conv2d:
    """One vectorised shape for rows of one kind and dtype (dimensions as int64 arrays)."""
    kinds, dtypes = {r.kind for r in rows}, {r.dtype for r in rows}
    if len(kinds) != 1 or len(dtypes) != 1:
        raise ValueError(f"rows: expected one kind and one dtype, got {sorted(kinds)} / {sorted(dtypes)}")
    kind, dtype = kinds.pop(), dtypes.pop()
    cols = np.array([r.shape for r in rows], dtype=np.int64).T
    dims = dict(zip(SHAPE_COLUMNS[kind], cols, strict=True))
    return Gemm(**dims, dtype=dtype) if kind == "gemm" else Conv2d(**dims, dtype=dtype)


def group_key(row: Row) -> tuple[str, str, str]:
    return (row.model_backend, row.dtype, row.kind)


def group_rows(rows: Iterable[Row]) -> list[tuple[tuple[Row, ...], Group]]:
    """[(rows, fit.Group)], one per (model backend, dtype, kind), in first-seen order.

    Each Group holds the rows' vectorised shape, their measured latencies in seconds and the model
    backend (our kernel's name, or cublas / cudnn).
    """
    by_key: dict[tuple, list[Row]] = {}
    for r in rows:
        by_key.setdefault(group_key(r), []).append(r)
    out = []
    for (backend, _dtype, _kind), members in by_key.items():
        measured_s = np.array([r.latency_us for r in members]) * 1e-6
        out.append((tuple(members), Group(shape_of(members), measured_s, backend)))
    return out


# ------------------------------------------------------------------------------------ width scans

SCAN_COLUMNS = ("network", "count", "dtype", "keep", "widths", "window", "latency_us_median")


@dataclass(frozen=True)
class ScanPoint:
    """One width of a width scan (validation/width_scan.py): a network run back to back at ``widths``,
    its latency the median of its timing windows."""

    network: str
    count: int
    dtype: str
    keep: float
    widths: dict
    measured_s: float
    windows: int


def _widths(text: str, where: str) -> dict:
    out = {}
    for item in text.split():
        name, _, value = item.partition("=")
        if not name or not value.isdigit():
            raise ValueError(f"{where}: widths: expected 'name=width ...', got {text!r}")
        out[name] = int(value)
    return out


def read_width_scan(path) -> list[ScanPoint]:
    """The points of a width-scan CSV, each the median window of its timings (sorted by keep)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SCAN_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a width scan: missing columns {', '.join(missing)}")
        by: dict[tuple, list[tuple[float, dict]]] = {}
        for i, d in enumerate(reader, start=2):
            where = f"{path}:{i}"
            widths = _widths(d["widths"], where)
            key = (d["network"], _int(d["count"], "count", where), d["dtype"], tuple(sorted(widths.items())))
            try:
                us = float(d["latency_us_median"])
            except ValueError:
                raise ValueError(f"{where}: latency_us_median: not a number: "
                                 f"{d['latency_us_median']!r}") from None
            by.setdefault(key, []).append((us, d))
    points = []
    for (network, count, dtype, widths), timed in by.items():
        lat = sorted(us for us, _ in timed)
        points.append(ScanPoint(network, count, dtype, min(float(d["keep"]) for _, d in timed), dict(widths),
                                lat[(len(lat) - 1) // 2] * 1e-6, len(lat)))
    return sorted(points, key=lambda p: (p.network, p.keep))
