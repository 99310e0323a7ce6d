"""Subcommands of the ``wavemodel`` command line, one module each (``wavemodel/cli.py`` finds them).

A command module ``wavemodel/commands/<name>.py`` defines::

    def add_parser(subparsers) -> None:     # subparsers.add_parser("<name>", help=...), its options
    def run(args) -> int:                   # 0 on success

``run`` raises ``ValueError`` for bad input (the CLI prints it as one line and exits 2) and prints
its result to stdout (``--json``: one JSON document, nothing else). Modules whose name starts with
``_`` are not commands. The helpers below keep the commands alike.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from ..configs import KernelConfig, catalogue_files, load_catalogue, own_kernels
from ..latency import LIBRARY_BACKENDS

MAX_POINTS = 1_000_000


def add_gpu_argument(parser, default: str = "h100-sxm") -> None:
    parser.add_argument("--gpu", default=default,
                        help=f"GPU catalogue name or alias (see 'wavemodel gpus'); default {default}")


def add_backend_argument(parser) -> None:
    parser.add_argument("--backend", default=None,
                        help="cublas | cudnn | one of our kernels | a catalogue configuration name "
                             "(e.g. cublas_128x128_64x6_1x1); default cublas for a GEMM, cudnn for a conv")


def add_json_argument(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def resolve_backend(name: str | None):
    """A backend name for ``predict_latency``, or the ``KernelConfig`` a catalogue calls ``name``."""
    if name is None or name in LIBRARY_BACKENDS or name in own_kernels():
        return name
    for file in catalogue_files():
        for cfg in load_catalogue(file):
            if cfg.name == name:
                return cfg
    return name   # predict_latency raises the ValueError that lists what is allowed


def backend_name(backend) -> str:
    return backend.name if isinstance(backend, KernelConfig) else (backend or "default")


def parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an integer, got {text!r}") from None


def is_range(text: str) -> bool:
    return ":" in str(text)


def parse_range(text: str, name: str) -> np.ndarray:
    """``"lo:hi"`` or ``"lo:hi:step"`` (``hi`` included when the steps land on it) as an int array."""
    parts = str(text).split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise ValueError(f"{name}: expected a range lo:hi or lo:hi:step, got {text!r}")
    lo, hi = parse_int(parts[0], name), parse_int(parts[1], name)
    step = parse_int(parts[2], name) if len(parts) == 3 else 1
    if lo < 1 or step < 1 or hi < lo:
        raise ValueError(f"{name}: range {text!r} needs 1 <= lo <= hi and step >= 1")
    count = (hi - lo) // step + 1
    if count > MAX_POINTS:
        raise ValueError(f"{name}: range {text!r} has {count} points; at most {MAX_POINTS}")
    return np.arange(lo, hi + 1, step, dtype=np.int64)


def table(rows: list[list], headers: list[str] | None = None) -> str:
    """Plain-text table; with ``headers``, numeric columns are right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    all_rows = ([list(headers)] if headers else []) + rows
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]

    def fmt(r):
        pairs = zip(r, widths, strict=True)
        cells = [c.rjust(w) if headers and _numeric(c) else c.ljust(w) for c, w in pairs]
        return "  ".join(cells).rstrip()

    lines = [fmt(r) for r in all_rows]
    if headers:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def to_jsonable(value):
    """numpy scalars and arrays, dataclasses, tuples -> plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def print_json(value) -> None:
    json.dump(to_jsonable(value), sys.stdout, indent=2)
    sys.stdout.write("\n")
