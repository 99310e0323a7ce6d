"""``wavemodel predict``: the predicted latency of one GEMM or convolution, with its waves and tiles."""

from __future__ import annotations

import dataclasses

from .. import Conv2d, Gemm, gpu, predict_latency
from ..latency import Prediction
from ..penalties import alignment_penalties
from . import (
    add_backend_argument,
    add_gpu_argument,
    add_json_argument,
    backend_name,
    parse_int,
    print_json,
    resolve_backend,
    table,
)

CONV_FIELDS = ("n", "c", "h", "w", "k", "r", "s")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predict the latency of a GEMM or a convolution",
        description="Predict one GEMM (--m --n --k) or convolution (--conv n,c,h,w,k,r,s).")
    for d in ("m", "n", "k"):
        p.add_argument(f"--{d}", type=int, help=f"GEMM {d.upper()}")
    p.add_argument("--batch", type=int, default=1, help="GEMM batch (default 1)")
    p.add_argument("--conv", metavar="N,C,H,W,K,R,S",
                   help="a 2-D convolution: batch, input channels, height, width, output channels, filter")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", type=int, default=0)
    p.add_argument("--dilation", type=int, default=1)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--dtype", default="fp16", help="fp32 | tf32 | fp16 | bf16 | fp8 | int8 (default fp16)")
    p.add_argument("--sustained", action="store_true",
                   help="predict the call as part of a long run of layers: under the board's power limit "
                        "where the GPU's profile knows it (wavemodel.power)")
    add_gpu_argument(p)
    add_backend_argument(p)
    add_json_argument(p)


def shape_from_args(args) -> Gemm | Conv2d:
    gemm_given = [d for d in ("m", "n", "k") if getattr(args, d) is not None]
    if args.conv is not None:
        if gemm_given or args.batch != 1:
            raise ValueError("--conv: give either --conv or --m/--n/--k/--batch, not both")
        parts = [x.strip() for x in args.conv.split(",")]
        if len(parts) != len(CONV_FIELDS):
            raise ValueError(f"--conv: expected {len(CONV_FIELDS)} comma-separated integers "
                             f"{','.join(CONV_FIELDS)}, got {args.conv!r}")
        values = {f: parse_int(v, f"--conv {f}") for f, v in zip(CONV_FIELDS, parts, strict=True)}
        return Conv2d(**values, stride=args.stride, padding=args.padding, dilation=args.dilation,
                      groups=args.groups, dtype=args.dtype)
    missing = [f"--{d}" for d in ("m", "n", "k") if getattr(args, d) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: required for a GEMM (or give --conv n,c,h,w,k,r,s)")
    return Gemm(m=args.m, n=args.n, k=args.k, batch=args.batch, dtype=args.dtype)


def prediction_dict(p: Prediction) -> dict:
    """Every field of the Prediction (the config as its own fields), plus the achieved rate."""
    out = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    out["achieved_flops_per_s"] = p.achieved_flops_per_s
    return out


def run(args) -> int:
    spec = gpu(args.gpu)
    shape = shape_from_args(args)
    backend = resolve_backend(args.backend)
    p = predict_latency(shape, spec, backend, sustained=args.sustained)
    notes = alignment_penalties(shape, p.config)
    if args.json:
        print_json({"shape": _shape_dict(shape), "gpu": spec.name, "sustained": args.sustained,
                    **prediction_dict(p), "alignment_penalties": notes})
        return 0
    cfg = p.config
    rows = [["shape", repr(shape)]]
    if isinstance(shape, Conv2d):
        rows.append(["implicit GEMM", repr(shape.gemm())])
    rows += [
        ["gpu", str(spec)],
        ["backend", f"{backend_name(backend if backend is not None else p.backend)}"
                    f"{'' if p.calibrated else ' (uncalibrated defaults)'}"],
        ["config", f"{cfg.name}: tile {cfg.tile}, cluster {cfg.cluster_m}x{cfg.cluster_n}, "
                   f"split-K {cfg.split_k}, {cfg.threads} threads, {cfg.math}"
                   + (f"; parameters of family {cfg.family} (1x1 filter)"
                      if cfg.pointwise_family and cfg.family == cfg.pointwise_family else "")],
        ["latency", f"{p.latency_s * 1e6:.2f} us" + (" (sustained run)" if args.sustained else "")],
        ["achieved", f"{p.achieved_flops_per_s / 1e12:.1f} TFLOP/s"],
        ["bound", p.bound],
        ["tiles", p.tiles],
        ["waves", f"{p.waves} (wave = {p.wave_size} tiles, {p.blocks_per_sm} per SM; "
                  f"last wave {p.tail_utilization:.1%} full)"],
        ["compute", f"{p.compute_s * 1e6:.2f} us"],
        ["memory", f"{p.memory_s * 1e6:.2f} us"],
    ]
    rows += [["alignment" if i == 0 else "", note] for i, note in enumerate(notes)]
    print(table(rows))
    return 0


def _shape_dict(shape) -> dict:
    kind = "conv2d" if isinstance(shape, Conv2d) else "gemm"
    return {"kind": kind, **{f.name: getattr(shape, f.name) for f in dataclasses.fields(shape)}}
