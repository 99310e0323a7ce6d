"""``wavemodel staircase``: latency against one dimension (a range), its exact steps, and a PNG plot."""

from __future__ import annotations

import numpy as np

from .. import Gemm
from ..plot import figure_from_data, save, staircase_data
from . import (
    add_backend_argument,
    add_gpu_argument,
    add_json_argument,
    backend_name,
    is_range,
    parse_int,
    parse_range,
    print_json,
    resolve_backend,
    table,
)

DIMS = ("m", "n", "k")
SHOWN_STEPS = 12


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "staircase", help="latency against one GEMM dimension, steps marked; --out writes a plot",
        description="Sweep one GEMM dimension given as a range lo:hi[:step] (hi included), the others "
                    "fixed, e.g. --dim n --m 4096 --n 256:8192:64 --k 4096 --out staircase.png")
    p.add_argument("--dim", help="the swept dimension, m | n | k (default: the one given as a range)")
    for d in DIMS:
        p.add_argument(f"--{d}", required=True, metavar="INT|LO:HI[:STEP]", help=f"GEMM {d.upper()}")
    p.add_argument("--batch", type=int, default=1, help="GEMM batch (default 1)")
    p.add_argument("--dtype", default="fp16", help="fp32 | tf32 | fp16 | bf16 | fp8 | int8 (default fp16)")
    add_gpu_argument(p)
    add_backend_argument(p)
    p.add_argument("--out", metavar="FILE", help="write the plot to FILE (.png, .svg or .pdf)")
    add_json_argument(p)


def sweep_from_args(args) -> tuple[str, np.ndarray, Gemm]:
    """The swept dimension, its values, and a Gemm holding the fixed ones."""
    ranged = [d for d in DIMS if is_range(getattr(args, d))]
    dim = args.dim
    if dim is not None and dim not in DIMS:
        raise ValueError(f"--dim: {dim!r} is not a GEMM dimension; allowed values: {', '.join(DIMS)}")
    if dim is None:
        if len(ranged) != 1:
            raise ValueError("--m, --n, --k: give exactly one of them as a range lo:hi[:step] "
                             f"(got {len(ranged)}), or name it with --dim")
        dim = ranged[0]
    elif ranged and ranged != [dim]:
        others = ", ".join("--" + d for d in ranged)
        raise ValueError(f"--dim {dim}: only --{dim} may be a range, not {others}")
    text = getattr(args, dim)
    values = parse_range(text, f"--{dim}") if is_range(text) else np.array([parse_int(text, f"--{dim}")])
    fixed = {d: parse_int(getattr(args, d), f"--{d}") for d in DIMS if d != dim}
    return dim, values, Gemm(**fixed, **{dim: int(values[0])}, batch=args.batch, dtype=args.dtype)


def run(args) -> int:
    dim, values, base = sweep_from_args(args)
    backend = resolve_backend(args.backend)
    data = staircase_data(base, args.gpu, dim, values, backend)
    out = None
    if args.out:
        out = str(save(figure_from_data(data), args.out))
    if args.json:
        print_json(_json(data, out))
        return 0
    x, lat_us = data["x"], data["latency_s"] * 1e6
    tflops = data["flops"] / data["latency_s"] / 1e12
    steps = data["steps"]
    shown = ", ".join(map(str, steps[:SHOWN_STEPS])) + (" ..." if len(steps) > SHOWN_STEPS else "")
    fixed = " ".join(f"{d}={getattr(base, d)}" for d in DIMS if d != dim)
    rows = [
        ["gpu", str(data["gpu"])],
        ["backend", backend_name(backend) if backend is not None else data["backend"]],
        ["fixed", f"{fixed} batch={base.batch} {base.dtype}"],
        ["points", f"{x.size} ({dim} = {x[0]}..{x[-1]})"],
        ["latency", f"{lat_us.min():.2f} .. {lat_us.max():.2f} us"],
        ["achieved", f"{tflops.min():.1f} .. {tflops.max():.1f} TFLOP/s"],
        ["steps", f"{len(steps)}" + (f" at {dim} = {shown}" if steps else "")],
    ]
    if out:
        rows.append(["wrote", out])
    print(table(rows))
    return 0


def _json(data: dict, out: str | None) -> dict:
    dim, base = data["dim"], data["shape"]
    lat = data["latency_s"]
    points = [
        {dim: int(x), "latency_s": float(t), "latency_us": float(t * 1e6),
         "achieved_tflops": float(f / t / 1e12), "waves": int(w), "tiles": int(n), "config": c}
        for x, t, f, w, n, c in zip(data["x"], lat, data["flops"], data["waves"], data["tiles"],
                                    data["config"], strict=True)
    ]
    return {
        "gpu": data["gpu"].name, "backend": data["backend"], "dim": dim,
        "fixed": {d: getattr(base, d) for d in DIMS if d != dim} | {"batch": base.batch, "dtype": base.dtype},
        "steps": data["steps"], "points": points, "out": out,
    }
