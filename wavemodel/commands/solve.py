"""``wavemodel solve``: free widths and time-saving cuts for a layer, a network, or a transformer's sizes.

Three modes:

* network: ``--network resnet50 --batch 32 --keep 0.7`` (or ``--budget-ms X``, ``--min-channels N``)
  chooses per-layer widths; ``--json`` prints per layer ``name, width_before, width_after,
  latency_before_s, latency_after_s`` and the totals;
* layer: ``--gemm M,N,K`` or ``--conv N,C,H,W,K,R,S`` (``--width W``): the step the layer is on, its
  free capacity and the cut that saves time;
* transformer sizing: ``--transformer llama-7b --tokens 4096``: nearby hidden / FFN / head / vocabulary
  sizes that are free, cheaper or padded, with the reason per GEMM.

``--plot FILE`` draws the staircases (each changed layer's, with both widths marked).
"""

from __future__ import annotations

import numpy as np

from .. import Conv2d, Gemm
from .. import solver as S
from ..gpus import gpu as lookup_gpu
from ..networks import layer_shape, load_network, presets
from . import (
    add_backend_argument,
    add_gpu_argument,
    add_json_argument,
    parse_int,
    print_json,
    resolve_backend,
    table,
)

CONV_FIELDS = ("n", "c", "h", "w", "k", "r", "s")
MAX_PANELS = 24


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "solve", help="layer widths that are free and cuts that save time (layer, network, transformer)",
        description="Network: --network NAME|FILE (--batch B | --tokens T) (--keep R | --budget-ms X | "
                    "--min-channels N). Layer: --gemm M,N,K or --conv N,C,H,W,K,R,S [--width W]. "
                    "Transformer sizing: --transformer NAME --tokens T. Presets: " + ", ".join(presets()))
    what = p.add_argument_group("what to solve")
    what.add_argument("--network", metavar="NAME|FILE", help="a preset or a JSON/YAML layer list")
    what.add_argument("--layer", action="store_true", help="single-layer mode (implied by --gemm / --conv)")
    what.add_argument("--gemm", metavar="M,N,K", help="a GEMM layer; its width is N")
    what.add_argument("--conv", metavar="N,C,H,W,K,R,S", help="a conv layer; its width is K")
    what.add_argument("--transformer", metavar="NAME", help="transformer sizing mode for a preset")
    p.add_argument("--stride", type=int, default=1, help="--conv stride (default 1)")
    p.add_argument("--padding", type=int, default=0, help="--conv padding (default 0)")
    p.add_argument("--groups", type=int, default=1, help="--conv groups (depthwise: groups = C = K)")
    p.add_argument("--width", type=int, help="layer mode: the width to examine (default N or K)")
    p.add_argument("--batch", type=int, help="batch size (CNN presets; GEMM batch in layer mode)")
    p.add_argument("--tokens", type=int, help="token count (transformer presets, GEMM M)")
    p.add_argument("--dtype", default="fp16", help="fp32 | tf32 | fp16 | bf16 | fp8 | int8 (default fp16)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (divides sharded dimensions)")
    goal = p.add_argument_group("network goal (one of)")
    goal.add_argument("--keep", type=float, metavar="R", help="uniform keep ratio: the budget is its latency")
    goal.add_argument("--budget-ms", type=float, metavar="X", help="latency budget in milliseconds")
    goal.add_argument("--min-channels", type=int, metavar="N", help="keep at least N channels, least latency")
    p.add_argument("--match", choices=("latency", "channels"), default="latency",
                   help="--keep: most channels at the uniform latency (default) or least latency at "
                        "its channels")
    p.add_argument("--max-change", type=float, default=S.DEFAULT_MAX_CHANGE, metavar="F",
                   help="--keep: each width within F x original of the uniform width (default "
                        f"{S.DEFAULT_MAX_CHANGE}; 1 = anywhere)")
    p.add_argument("--min-keep", type=float, default=0.0, metavar="F", help="no width below F x original")
    p.add_argument("--alignment", type=int, default=8, help="widths are multiples of this (default 8)")
    p.add_argument("--method", choices=("auto", "exact", "lagrangian"), default="auto")
    p.add_argument("--dims", default=",".join(S.SIZING_DIMENSIONS),
                   help="transformer mode: dimensions to size (default all)")
    p.add_argument("--window", type=float, default=0.125, help="transformer mode: sizes within this fraction")
    p.add_argument("--plot", metavar="FILE", help="write the staircase plot to FILE (.png, .svg, .pdf)")
    add_gpu_argument(p)
    add_backend_argument(p)
    add_json_argument(p)


# ------------------------------------------------------------------------------------------ dispatch


def run(args) -> int:
    layer_mode = args.layer or args.gemm is not None or args.conv is not None
    chosen = [m for m, on in (("--network", args.network is not None), ("--gemm/--conv/--layer", layer_mode),
                              ("--transformer", args.transformer is not None)) if on]
    if len(chosen) != 1:
        raise ValueError("solve: give exactly one of --network, --gemm/--conv (layer mode) or --transformer"
                         + (f"; got {' and '.join(chosen)}" if chosen else ""))
    if layer_mode:
        return run_layer(args)
    if args.transformer is not None:
        return run_transformer(args)
    return run_network(args)


# ------------------------------------------------------------------------------------------ layer


def _ints(text: str, name: str, fields) -> dict:
    parts = [x.strip() for x in str(text).split(",")]
    if len(parts) != len(fields):
        raise ValueError(f"{name}: expected {len(fields)} comma-separated integers {','.join(fields)}, "
                         f"got {text!r}")
    return {f: parse_int(v, f"{name} {f}") for f, v in zip(fields, parts, strict=True)}


def layer_shape_from_args(args) -> Gemm | Conv2d:
    if (args.gemm is None) == (args.conv is None):
        raise ValueError("--layer: give exactly one of --gemm M,N,K or --conv N,C,H,W,K,R,S")
    if args.gemm is not None:
        d = _ints(args.gemm, "--gemm", ("m", "n", "k"))
        return Gemm(**d, batch=1 if args.batch is None else args.batch, dtype=args.dtype)
    d = _ints(args.conv, "--conv", CONV_FIELDS)
    return Conv2d(**d, stride=args.stride, padding=args.padding, groups=args.groups, dtype=args.dtype)


def run_layer(args) -> int:
    shape = layer_shape_from_args(args)
    backend = resolve_backend(args.backend)
    name = "gemm" if isinstance(shape, Gemm) else "conv"
    sc = S.layer_staircase(S.with_width(shape, args.width) if args.width else shape, args.gpu, backend,
                           args.alignment, name=name)
    width = args.width or int(shape.n if isinstance(shape, Gemm) else shape.k)
    sol = sc.at(width)
    out = None
    if args.plot:
        out = str(_save(layer_figure(sc, sol, shape, args.gpu), args.plot))
    if args.json:
        print_json({"layer": repr(shape), "gpu": lookup_gpu(args.gpu).name, **_asdict(sol),
                    "free_channels": sol.free_channels, "cut_saving_s": sol.cut_saving_s, "plot": out})
        return 0
    rows = [
        ["layer", repr(shape)],
        ["gpu", str(lookup_gpu(args.gpu))],
        ["width", f"{sol.width}: {sol.latency_s * 1e6:.2f} us, {sol.tiles} tiles, {sol.waves} waves, "
                  f"{sol.config}"],
        ["step", f"widths {sol.step_start}..{sol.free_width} take at most {sol.latency_s * 1e6:.2f} us"],
        ["free", f"up to {sol.free_width} (+{sol.free_channels} channels at no extra cost, "
                 f"{sol.free_latency_s * 1e6:.2f} us)"
                 + (" (end of the widths searched)" if sol.free_is_truncated else "")],
        ["cut", "none below" if sol.cut_width is None else
         f"{sol.cut_width}: {sol.cut_latency_s * 1e6:.2f} us "
         f"(saves {sol.cut_saving_s * 1e6:.2f} us, {sol.cut_saving_s / sol.latency_s:.1%})"],
    ]
    if out:
        rows.append(["wrote", out])
    print(table(rows))
    return 0


# ------------------------------------------------------------------------------------------ network


def run_network(args) -> int:
    goals = [g for g in ("keep", "budget_ms", "min_channels") if getattr(args, g) is not None]
    if len(goals) != 1:
        raise ValueError("--network: give exactly one of --keep R, --budget-ms X or --min-channels N")
    net = load_network(args.network, tp=args.tp)
    backend = resolve_backend(args.backend)
    if args.batch is not None and args.tokens is not None:
        raise ValueError("--batch, --tokens: give one (the network's count), not both")
    count = args.batch if args.batch is not None else args.tokens
    if count is None:
        raise ValueError(f"--{net.count}: required for {net.name}")
    sol = S.solve_network(
        net, args.gpu, count=count, dtype=args.dtype,
        budget_s=None if args.budget_ms is None else args.budget_ms * 1e-3, keep=args.keep,
        min_channels=args.min_channels, match=args.match,
        max_change=None if args.max_change >= 1 else args.max_change, min_keep=args.min_keep,
        alignment=args.alignment, method=args.method, backend=backend)
    out = None
    if args.plot:
        out = str(_save(network_figure(sol, net, args.gpu, backend), args.plot))
    bounds = S.layer_bounds(net, sol.widths_after, args.gpu, count, args.dtype, backend)
    if args.json:
        doc = solution_json(sol)
        for layer, b in zip(doc["layers"], bounds, strict=True):
            layer["bound_after"] = b
        print_json(doc | {"plot": out})
        return 0
    print(solution_table(sol))
    power = [x.name for x, b in zip(sol.layers, bounds, strict=True) if b == "power"]
    if power:
        print(f"\npower: {len(power)} of {len(bounds)} layers run at the board's sustained power limit "
              f"({', '.join(power[:6])}{', ...' if len(power) > 6 else ''}): their latency follows their "
              "FLOPs, so no width of theirs is free (wavemodel.power)")
    if out:
        print(f"\nwrote {out}")
    return 0


LAYER_KEYS = ("name", "width_before", "width_after", "latency_before_s", "latency_after_s", "in_width_before",
              "in_width_after")


def solution_json(sol: S.NetworkSolution) -> dict:
    """The CLI's JSON: settings, per layer (name, widths, latencies), per width variable, totals."""
    layers = []
    for x in sol.layers:
        d = {k: getattr(x, k) for k in LAYER_KEYS}
        if sol.widths_reference is not None:
            d |= {"width_reference": x.width_reference, "latency_reference_s": x.latency_reference_s}
        layers.append(d)
    widths = {v: {"before": sol.widths_before[v], "after": sol.widths_after.get(v, sol.widths_before[v])}
              | ({"reference": sol.widths_reference[v]} if sol.widths_reference else {})
              for v in sol.widths_before}
    totals = {"channels_before": sol.channels_before, "channels_after": sol.channels_after,
              "latency_before_s": sol.latency_before_s, "latency_after_s": sol.latency_after_s}
    if sol.widths_reference is not None:
        totals |= {"channels_reference": sol.channels_reference,
                   "latency_reference_s": sol.latency_reference_s}
    totals |= {"budget_s": sol.budget_s, "min_channels": sol.min_channels,
               "channels_upper_bound": sol.channels_upper_bound,
               "latency_lower_bound_s": sol.latency_lower_bound_s,
               "optimal": sol.optimal}
    return {"network": sol.network, "gpu": sol.gpu, "dtype": sol.dtype, sol.count_name: sol.count,
            "mode": sol.mode, "keep": sol.keep, "objective": sol.objective, "method": sol.method,
            "alignment": sol.alignment, "max_change": sol.max_change, "layers": layers, "widths": widths,
            "totals": totals}


def solution_table(sol: S.NetworkSolution) -> str:
    ref = sol.widths_reference is not None
    head = ["layer", "width", "in width"] + (["uniform us" if sol.mode == "keep" else "reference us"] if ref
                                            else []) + ["before us", "after us"]
    rows = []
    unchanged = 0
    for x in sol.layers:
        if not x.changed and abs(x.latency_after_s - x.latency_before_s) <= 1e-12:
            unchanged += 1
            continue
        w = f"{x.width_before}->{x.width_after}" if x.width_before != x.width_after else str(x.width_after)
        wi = (f"{x.in_width_before}->{x.in_width_after}" if x.in_width_before != x.in_width_after
              else str(x.in_width_after))
        rows.append([x.name, w, wi] + ([f"{x.latency_reference_s * 1e6:.2f}"] if ref else [])
                    + [f"{x.latency_before_s * 1e6:.2f}", f"{x.latency_after_s * 1e6:.2f}"])
    goal = (f"keep {sol.keep} (uniform widths, multiples of {sol.alignment})" if sol.mode == "keep"
            else f"budget {sol.budget_s * 1e3:.4g} ms" if sol.mode == "budget"
            else f"at least {sol.min_channels} channels" if sol.mode == "channels" else "reference widths")
    summary = [
        ["network", f"{sol.network}, {sol.count_name} {sol.count}, {sol.dtype}, {sol.gpu}"],
        ["goal", goal + ("" if sol.objective == "max_channels" else ", least latency")],
        ["solver", f"{sol.method}, " + ("optimal over the candidate widths" if sol.optimal else
                                        f"certified bound: {_bound(sol)}")],
    ]
    totals = [["original", sol.channels_before, f"{sol.latency_before_s * 1e6:.1f}"]]
    if ref:
        totals.append(["uniform" if sol.mode == "keep" else "reference", sol.channels_reference,
                       f"{sol.latency_reference_s * 1e6:.1f}"])
    totals.append(["solver", sol.channels_after, f"{sol.latency_after_s * 1e6:.1f}"])
    parts = [table(summary), "", table(rows, head) if rows else "(no layer changes)"]
    if unchanged:
        parts.append(f"({unchanged} unchanged layers not shown)")
    parts += ["", table(totals, ["network", "channels", "latency us"])]
    return "\n".join(parts)


def _bound(sol) -> str:
    if sol.objective == "max_channels":
        return f"at most {sol.channels_upper_bound} channels fit"
    return f"no choice is faster than {sol.latency_lower_bound_s * 1e6:.1f} us"


# ------------------------------------------------------------------------------------------ transformer


def run_transformer(args) -> int:
    if args.tokens is None:
        raise ValueError("--tokens: required for --transformer")
    dims = tuple(d.strip() for d in args.dims.split(",") if d.strip())
    rep = S.size_transformer(args.transformer, args.gpu, tokens=args.tokens, dtype=args.dtype, tp=args.tp,
                             dimensions=dims, window=args.window, alignment=args.alignment,
                             backend=resolve_backend(args.backend))
    if args.plot:
        raise ValueError("--plot: not available in --transformer mode; use --layer on one GEMM")
    if args.json:
        print_json(rep.to_dict())
        return 0
    print(f"{rep.model} on {rep.gpu}, {rep.tokens} tokens, {rep.dtype}, tp {rep.tp}: linear layers "
          f"{rep.latency_s * 1e6:.1f} us")
    for a in rep.advice:
        print(f"\n{a.dimension} = {a.current} (sizes {a.searched[0]}..{a.searched[1]}, step {a.step})")
        if not a.options:
            print("  no nearby size is free or cheaper")
        for o in a.options:
            span = f"{o.value}" + (f"..{o.up_to}" if o.up_to != o.value else "")
            print(f"  {o.kind:8s} {span}: {o.delta_s * 1e6:+.1f} us ({o.delta_s / a.latency_s:+.2%})")
            for c in o.changes:
                print(f"    {c.reason}")
    return 0


# ------------------------------------------------------------------------------------------ plots


def _asdict(x) -> dict:
    import dataclasses

    return dataclasses.asdict(x)


def _save(fig, path):
    try:
        from ..plot import save
    except ImportError:       # plot.py is optional for this command
        from pathlib import Path

        fig.savefig(path, dpi=120)
        return Path(path)
    return save(fig, path)


def layer_figure(sc: S.Staircase, sol: S.LayerSolution, shape, gpu):
    """The layer's staircase (latency and TFLOP/s against width) with width, free and cut marked."""
    from ..plot import staircase_figure

    markers = {"width": sol.width}
    if sol.free_width != sol.width:
        markers["free"] = sol.free_width
    if sol.cut_width is not None:
        markers["cut"] = sol.cut_width
    a = sc.alignment
    x = np.union1d(sc.widths[a - 1::a], [sol.width])          # the aligned staircase and the width asked
    lat = sc.latency_s[x - 1]
    flops = np.asarray(S.with_width(shape, x).flops, dtype=float)
    lat_a = sc.latency_s[a - 1::a]
    steps = sc.widths[a - 1::a][1:][lat_a[1:] > lat_a[:-1] * (1 + S.RTOL)]     # first width of each rise
    return staircase_figure(x, lat, flops, steps=steps, markers=markers,
                            xlabel="width (n)" if isinstance(shape, Gemm) else "width (output channels k)",
                            title=f"{repr(shape)} on {lookup_gpu(gpu).display_name}")


def network_figure(sol: S.NetworkSolution, net, gpu, backend=None):
    """One panel per changed layer: latency against its output width (input at its new width), with
    the width before, the reference (uniform) width and the width after marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = lookup_gpu(gpu)
    layers = {x.name: x for x in net.layers}
    changed = [c for c in sol.layers
               if c.width_before != c.width_after and layers[c.name].out_var is not None]
    changed.sort(key=lambda c: c.latency_after_s - c.latency_before_s)
    changed = changed[:MAX_PANELS]
    if not changed:
        raise ValueError("--plot: no layer's width changed; nothing to draw")
    shapes, ranges = [], []
    for c in changed:
        layer = layers[c.name]
        mult = layer.out_mult
        var = net.var(layer.in_var if layer.depthwise else layer.out_var)
        step = S.width_step(var, sol.alignment, net.tp)
        widths = np.arange(step, var.width + 1, step)
        in_w = sol.widths_after.get(layer.in_var) if layer.in_var else None
        if layer.depthwise:
            shapes.append(layer_shape(layer, sol.count, sol.dtype, in_width=widths, tp=net.tp))
        else:
            shapes.append(layer_shape(layer, sol.count, sol.dtype, in_width=in_w, out_width=widths,
                                      tp=net.tp))
        ranges.append(widths * mult)
    preds = S.predict_many(shapes, spec, backend)
    cols = min(4, len(changed))
    rows = -(-len(changed) // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, c, x, p in zip(axes, changed, ranges, preds, strict=False):
        ax.plot(x, p["latency_s"] * 1e6, "-", lw=1, color="C0")
        ax.axvline(c.width_before, color="0.4", ls=":", lw=1.2, label=f"before {c.width_before}")
        if c.width_reference is not None:
            ax.axvline(c.width_reference, color="C1", ls="--", lw=1.2,
                       label=f"{'uniform' if sol.mode == 'keep' else 'reference'} {c.width_reference}")
        ax.axvline(c.width_after, color="C2", ls="-", lw=1.5, label=f"after {c.width_after}")
        ax.set_title(c.name, fontsize="small")
        ax.set_xlabel("output width", fontsize="small")
        ax.set_ylabel("µs", fontsize="small")
        ax.set_ylim(0, float(np.max(p["latency_s"])) * 1e6 * 1.08)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right")
    for ax in axes[len(changed):]:
        ax.set_visible(False)
    fig.suptitle(f"{sol.network} on {spec.display_name}: {sol.count_name} {sol.count}, {sol.dtype}")
    return fig
