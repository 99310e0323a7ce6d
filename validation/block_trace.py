"""Per-block timelines of our GEMM kernels: when each thread block started and ended, and on which SM.

The wave model assumes blocks run in lockstep waves; this records what the hardware scheduler really
does (the kernels compiled with -DTRACE_BLOCKS, kernels/trace_blocks.cuh), for shapes on both sides of
wave boundaries. For each shape: warm-up launches, then ``--repeats`` traced launches back to back.

Usage (on a GPU):
    PYTHONPATH=. python validation/block_trace.py --out DIR [--graph 12 | --conv 8 [--conv-tails]]
Writes DIR/block_trace.csv (kernel,m,n,k,repeat,block,sm,start_ns,end_ns; times relative to the
launch's first block start) and DIR/block_trace_env.json; with ``--conv``, block_trace_conv.csv (our
convs, one-wave calls) or, with ``--conv-tails``, block_trace_conv_tails.csv (multi-wave calls).

``--compare-builds`` instead times the registered and the traced build of simt_f32_128x64 with the
sweeps' harness (``time_device``) across its first wave boundaries. The traced build is not the same
program: its end-of-block barrier changes how a partial last wave runs. On the H100 (2026-11-25) it
ran 14080x272x256 in 91 us where the registered build takes 112 us (full waves agree within 2 us;
validation/data/h100-sxm/block_trace_builds.txt). The timelines show where and when blocks start;
how long a tail lasts is the registered kernel's, in the datasets.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

SHAPES = {  # kernel -> (m, k, [n ...]): staircases along N across wave boundaries
    "simt_f32_128x64": (14080, 256, [16, 240, 272, 336, 560, 592]),
    "simt_f32_64x64": (14080, 256, [64, 256, 304, 352, 544, 592]),
    "simt_f32_128x128": (7040, 256, [224, 512, 608, 800, 896]),
    "tc_f16_128x128": (7040, 1024, [224, 512, 608, 896, 992]),
    "tc_f16_128x256": (1920, 48, [3840]),
    "tc_f16_256x128": (1920, 1920, [3840]),
}


def compile_traced(name: str):
    import cupy

    from wavemodel.hardware import kernels as K

    kern = K.get(name)
    cc = cupy.cuda.Device().compute_capability
    fn = cupy.RawKernel(K.source(kern.source_file), kern.family,
                        options=(*K.nvrtc_options(kern, f"sm_{cc}"), "-DTRACE_BLOCKS"), backend="nvrtc")
    fn.compile()
    if kern.dynamic_smem_bytes > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = kern.dynamic_smem_bytes
    return kern, fn


def _launch_args(kern, m: int, n: int, k: int, rng):
    import cupy

    from wavemodel.hardware import kernels as K

    a = rng.standard_normal((m, k), dtype=np.float32).astype(kern.np_dtype)
    b = rng.standard_normal((k, n), dtype=np.float32).astype(kern.np_dtype)
    c = cupy.empty((m, n), dtype=kern.np_dtype)
    mm, nn, kk, batch, strides = K._gemm_dims(kern, a, b, c)
    grid = kern.grid(mm, nn, batch)
    args = [a, b, c, *K._i32(mm, nn, kk), *K._i64(*strides)]
    if kern.family == "simt_f32_gemm":
        args += K._i32(K._vec4(a, kk), K._vec4(b, nn), K._vec4(c, nn))
    return grid, args, a.nbytes + b.nbytes + c.nbytes


def _rows(trace, blocks: int, rep: int):
    t = trace.get().reshape(blocks, 3).astype(np.int64)
    t0 = t[:, 0].min()
    return [(rep, i, int(t[i, 2]), int(t[i, 0] - t0), int(t[i, 1] - t0)) for i in range(blocks)]


def trace_shape(kern, fn, m: int, n: int, k: int, repeats: int):
    """Single launches, synchronised between (inputs warm in L2)."""
    import cupy

    grid, args, _ = _launch_args(kern, m, n, k, cupy.random.default_rng(0))
    blocks = grid[0] * grid[1] * grid[2]
    trace = cupy.zeros(3 * blocks, dtype=cupy.uint64)
    out = []
    for rep in range(-3, repeats):
        fn(grid, (kern.threads, 1, 1), (*args, trace), shared_mem=kern.dynamic_smem_bytes)
        cupy.cuda.get_current_stream().synchronize()
        if rep >= 0:
            out += _rows(trace, blocks, rep)
    return out


def _traced_graph(kern, fn, grid, sets, launches: int):
    """``launches`` traced launches of ``fn`` (input sets rotated) captured in one CUDA graph, uploaded
    and replayed three times (not waited for): (graph, its stream, one trace buffer per launch, which
    holds the last replay's timelines once the stream is done)."""
    import cupy

    traces = [cupy.zeros(3 * grid[0] * grid[1] * grid[2], dtype=cupy.uint64) for _ in range(launches)]
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        for i in range(launches):
            fn(grid, (kern.threads, 1, 1), (*sets[i % len(sets)], traces[i]),
               shared_mem=kern.dynamic_smem_bytes, stream=s)
        graph = s.end_capture()
        graph.upload(s)
        for _ in range(3):
            graph.launch(s)
    return graph, s, traces


def trace_graph(kern, fn, m: int, n: int, k: int, launches: int, l2_bytes: int):
    """As the sweep times them: ``launches`` back-to-back launches in one CUDA graph, inputs rotated
    over enough sets to exceed twice the L2; one trace per launch of the last replay. Returns the rows
    (repeat = launch index) and the replay's event time per launch in microseconds."""
    import cupy

    rng = cupy.random.default_rng(0)
    grid, args, nbytes = _launch_args(kern, m, n, k, rng)
    sets = [args] + [_launch_args(kern, m, n, k, rng)[1] for _ in range(max(0, -(-2 * l2_bytes // nbytes)))]
    blocks = grid[0] * grid[1] * grid[2]
    graph, s, traces = _traced_graph(kern, fn, grid, sets, launches)
    with s:
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(s)
        graph.launch(s)
        end.record(s)
        end.synchronize()
    per_launch_us = cupy.cuda.get_elapsed_time(start, end) * 1e3 / launches
    rows = [r for i in range(launches) for r in _rows(traces[i], blocks, i)]
    return rows, per_launch_us


def compare_builds(name: str = "simt_f32_128x64", m: int = 14080, k: int = 256,
                   ns=(16, 240, 272, 288, 336, 560)) -> list[str]:
    """Median device time per call of the registered and the traced build, as the sweeps time them."""
    import cupy

    from wavemodel.hardware import kernels as K
    from wavemodel.hardware.timing import time_device

    kern = K.get(name)
    _, traced = compile_traced(name)
    registered = kern.compiled()
    rng = cupy.random.default_rng(0)
    lines = [f"{name} m={m} k={k}: n, tiles, registered us, traced us (time_device, 4 input sets)"]
    for n in ns:
        sets = [_launch_args(kern, m, n, k, rng) for _ in range(4)]
        grid = sets[0][0]
        blocks = grid[0] * grid[1] * grid[2]
        trace = cupy.zeros(3 * blocks, dtype=cupy.uint64)

        def launch(fn, extra, grid=grid, sets=sets):
            return lambda i: fn(grid, (kern.threads, 1, 1), (*sets[i % 4][1], *extra),
                                shared_mem=kern.dynamic_smem_bytes)
        t_reg = time_device(launch(registered, ()), framework="cupy", rotate=4, budget_s=0.05)
        t_tr = time_device(launch(traced, (trace,)), framework="cupy", rotate=4, budget_s=0.05)
        lines.append(f"{n} {blocks} {t_reg.median_us:.1f} {t_tr.median_us:.1f}")
        print(lines[-1], flush=True)
    return lines


# shapes (n, c, h, w, k, r, s, stride, padding) for both convs: one-wave calls of few K tiles, where
# the model's per-CTA cost (cta_dispatch_s) is fitted at 7-10 ns; a sweep of the CTA count at fixed
# work per CTA (1x1, 16x16 images: two 128-pixel tiles per image) and rows the model misses most
CONV_SHAPES = [(n, c, 16, 16, 64, 1, 1, 1, 0) for c in (32, 256)
                for n in (1, 4, 16, 32, 48, 64, 96, 128, 192)] + [
    (4, 24, 28, 28, 240, 1, 1, 1, 0), (1, 16, 7, 7, 232, 1, 1, 1, 0), (8, 8, 28, 28, 8, 1, 1, 1, 0),
    (64, 8, 28, 28, 8, 1, 1, 2, 0), (4, 16, 7, 7, 80, 1, 1, 1, 0), (32, 256, 14, 14, 144, 1, 1, 1, 0),
    (32, 256, 14, 14, 240, 1, 1, 1, 0)]
# multi-wave rows of conv_own.csv that conv_f16_128x64 misses by 10-21 % (and two neighbours it predicts
# well): how long the CTAs of the first waves and of the partial last wave run (``--conv-tails``)
CONV_TAIL_SHAPES = [
    (2, 400, 112, 112, 576, 3, 3, 2, 1), (32, 688, 28, 28, 1248, 3, 3, 2, 1),
    (32, 496, 56, 56, 112, 3, 3, 2, 1), (16, 48, 112, 112, 64, 3, 3, 1, 1),
    (32, 128, 28, 28, 256, 3, 3, 1, 1), (32, 128, 28, 28, 296, 3, 3, 1, 1),
    (64, 472, 14, 14, 272, 3, 3, 2, 1), (32, 128, 56, 56, 128, 3, 3, 2, 1)]
CONV_COLUMNS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding")


def _conv_args(kern, shape, rng):
    import cupy

    from wavemodel.hardware import kernels as K

    n, c, h, w, k, r, s, stride, pad = shape
    p, q = K.conv_output_hw(h, w, r, s, stride, pad)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32).astype(cupy.float16)
    f = rng.standard_normal((k, r, s, c), dtype=np.float32).astype(cupy.float16)
    y = cupy.empty((n, p, q, k), dtype=cupy.float16)
    args = [x, f, y, *K._i32(n, h, w, c, k, r, s, p, q, stride, pad)]
    return kern.grid(n * p * q, k), args, x.nbytes + f.nbytes


def trace_conv(name: str, shapes, launches: int, l2_bytes: int, writer) -> list[str]:
    """Each conv shape as the sweeps time it (``time_device``, inputs rotated past twice the L2) with
    the registered build, then ``launches`` back-to-back traced launches in one CUDA graph (rotated
    inputs), one timeline per launch. Returns one summary line per shape."""
    import cupy

    from wavemodel.hardware.timing import time_device

    kern, traced = compile_traced(name)
    registered = kern.compiled()
    rng = cupy.random.default_rng(0)
    lines = []
    for shape in shapes:
        grid, args, nbytes = _conv_args(kern, shape, rng)
        sets = [args] + [_conv_args(kern, shape, rng)[1] for _ in range(max(1, -(-2 * l2_bytes // nbytes)))]
        blocks = grid[0] * grid[1] * grid[2]
        t = time_device(lambda i, grid=grid, sets=sets: registered(
            grid, (kern.threads, 1, 1), tuple(sets[i % len(sets)]), shared_mem=kern.dynamic_smem_bytes),
            framework="cupy", rotate=len(sets), budget_s=0.1)
        _, st, traces = _traced_graph(kern, traced, grid, sets, launches)
        st.synchronize()
        rows = [r for i in range(launches) for r in _rows(traces[i], blocks, i)]
        writer.writerows((name, *shape, t.median_us, *r) for r in rows)
        spans = [max(r[4] for r in rows if r[0] == i) for i in range(launches)]
        lines.append(f"{name} {shape}: {blocks} CTAs, registered {t.median_us:.2f} us, traced "
                     f"first start to last end {np.median(spans) / 1e3:.2f} us (median of {launches})")
        print(lines[-1], flush=True)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder for block_trace.csv")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare-builds", action="store_true",
                    help="time the registered against the traced build instead (block_trace_builds.txt)")
    ap.add_argument("--conv", type=int, default=0, metavar="LAUNCHES",
                    help="trace our convs on CONV_SHAPES instead: LAUNCHES traced launches per shape in a "
                         "graph, beside the registered build's time (block_trace_conv.csv)")
    ap.add_argument("--conv-tails", action="store_true",
                    help="with --conv: trace CONV_TAIL_SHAPES instead (block_trace_conv_tails.csv)")
    ap.add_argument("--graph", type=int, default=0, metavar="LAUNCHES",
                    help="trace LAUNCHES back-to-back launches in a CUDA graph with rotated inputs instead")
    args = ap.parse_args(argv)
    if args.conv < 0 or args.graph < 0 or args.repeats < 1:
        ap.error("--conv, --graph: launches must be >= 0; --repeats: must be >= 1")
    if args.conv_tails and not args.conv:
        ap.error("--conv-tails: needs --conv LAUNCHES (it picks the shapes that --conv traces)")
    if sum(map(bool, (args.conv, args.graph, args.compare_builds))) > 1:
        ap.error("--conv, --graph, --compare-builds: choose one mode")
    from wavemodel.hardware.device import write_environment

    os.makedirs(args.out, exist_ok=True)
    if args.compare_builds:
        with open(os.path.join(args.out, "block_trace_builds.txt"), "w") as f:
            f.write("\n".join(compare_builds()) + "\n")
        return 0
    import cupy

    l2_bytes = cupy.cuda.Device().attributes["L2CacheSize"]
    if args.conv:
        stem = "block_trace_conv_tails" if args.conv_tails else "block_trace_conv"
        with open(os.path.join(args.out, f"{stem}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["kernel", *CONV_COLUMNS, "registered_us", "launch", "block", "sm", "start_ns",
                        "end_ns"])
            for name in ("conv_f16_128x64", "conv_f16_128x128"):
                trace_conv(name, CONV_TAIL_SHAPES if args.conv_tails else CONV_SHAPES, args.conv, l2_bytes, w)
        write_environment(os.path.join(args.out, f"{stem}_env.json"))
        return 0
    path = os.path.join(args.out, "block_trace_graph.csv" if args.graph else "block_trace.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "m", "n", "k", "repeat", "block", "sm", "start_ns", "end_ns"])
        for name, (m, k, ns) in SHAPES.items():
            kern, fn = compile_traced(name)
            for n in ns:
                event_us = ""
                if args.graph:
                    rows, per_launch = trace_graph(kern, fn, m, n, k, args.graph, l2_bytes)
                    event_us = f", graph replay {per_launch:.1f} us per launch"
                else:
                    rows = trace_shape(kern, fn, m, n, k, args.repeats)
                w.writerows((name, m, n, k, *r) for r in rows)
                ends = [r[4] for r in rows if r[0] == 0]
                print(f"{name} {m}x{n}x{k}: {len(ends)} blocks, last end {max(ends) / 1e3:.1f} us{event_us}",
                      flush=True)
    write_environment(os.path.join(args.out, "block_trace_env.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
