"""Time a network's layers one by one and as the back-to-back chain, beside the model's per-layer
predictions: where does a whole-network prediction gain or lose against the chain?

    PYTHONPATH=. python3 validation/chain_vs_layers.py --out DIR [--network resnet50] [--count 32]
        [--keep 1.0] [--windows 3] [--budget-s 0.3]

The chain is solver_benefit.py's (every layer back to back on its own input, device time of CUDA-graph
replays). Each layer alone is the same call timed by itself, its inputs rotated over enough copies to
exceed twice the L2 (as the sweeps time a call). Every timing is repeated in ``--windows`` passes
(the median kept). Writes ``DIR/chain_vs_layers_<network>_<count>.csv``: one row per layer (name,
shape, alone median us, model us alone and as a sustained run) and a last row ``chain`` with the
chain's median and the sums.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wavemodel as wm  # noqa: E402
from wavemodel import networks as N  # noqa: E402
from wavemodel import solver as S  # noqa: E402

HEADER = ("layer", "shape", "measured_us", "model_us", "model_sustained_us")


def layer_launch(sh, sets: int):
    """``launch(i)``: one layer's torch call on the i-th of ``sets`` input copies."""
    import torch
    import torch.nn.functional as F

    dev, tdt = torch.device("cuda"), torch.float16
    calls = []
    for _ in range(sets):
        if isinstance(sh, wm.Conv2d):
            cl = torch.channels_last
            x = torch.randn(sh.n, sh.c, sh.h, sh.w, dtype=tdt, device=dev).to(memory_format=cl)
            w = (torch.randn(sh.k, sh.c // sh.groups, sh.r, sh.s, dtype=tdt, device=dev) * 0.05).to(
                memory_format=cl)
            calls.append(lambda x=x, w=w: F.conv2d(x, w, None, sh.stride, sh.padding, sh.dilation, sh.groups))
        else:
            a = torch.randn(sh.m, sh.k, dtype=tdt, device=dev)
            b = torch.randn(sh.k, sh.n, dtype=tdt, device=dev) * 0.05
            out = torch.empty(sh.m, sh.n, dtype=tdt, device=dev)
            calls.append(lambda a=a, b=b, out=out: torch.matmul(a, b, out=out))
    return lambda i: calls[i % sets]()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--network", default="resnet50")
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--keep", type=float, default=1.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=0.3)
    ap.add_argument("--gpu", default="h100-sxm")
    args = ap.parse_args(argv)
    import torch

    from validation.solver_benefit import chain_launch
    from wavemodel.hardware.calls import conv_touched_bytes
    from wavemodel.hardware.timing import rotation_count, time_device

    torch.backends.cudnn.benchmark = True
    net = N.load_network(args.network)
    widths = S.uniform_widths(net, args.keep, 8)
    shapes = [N.layer_shape(x, args.count, "fp16", in_width=widths.get(x.in_var),
                            out_width=widths.get(x.out_var), tp=net.tp) for x in net.layers]
    _, model = S.network_latency(net, widths, args.gpu, args.count, "fp16", sustained=False)
    _, model_sus = S.network_latency(net, widths, args.gpu, args.count, "fp16")
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    alone = [[] for _ in shapes]
    chain = []
    for w in range(args.windows):
        for i, sh in enumerate(shapes):
            if isinstance(sh, wm.Conv2d):
                touched = conv_touched_bytes({f: getattr(sh, f) for f in ("n", "c", "h", "w", "k", "r", "s",
                                                                          "stride", "padding")})
            else:
                touched = 2 * (sh.m * sh.k + sh.k * sh.n + sh.m * sh.n)
            sets = rotation_count(touched, l2)
            t = time_device(layer_launch(sh, sets), budget_s=args.budget_s, framework="torch", rotate=sets)
            alone[i].append(t.median_s * 1e6)
            torch.cuda.empty_cache()
        t = time_device(chain_launch(net, widths, args.count), budget_s=args.budget_s, framework="torch")
        chain.append(t.median_s * 1e6)
        print(f"window {w}: chain {chain[-1]:.1f} us, layers alone {sum(a[-1] for a in alone):.1f} us",
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"chain_vs_layers_{args.network}_{args.count}.csv"
    with path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(HEADER)
        meds = [statistics.median(a) for a in alone]
        for x, sh, m, p, ps in zip(net.layers, shapes, meds, model, model_sus, strict=True):
            wr.writerow([x.name, repr(sh), f"{m:.3f}", f"{p * 1e6:.3f}", f"{ps * 1e6:.3f}"])
        wr.writerow(["chain", f"keep={args.keep:g} sum of layers alone {sum(meds):.3f}",
                     f"{statistics.median(chain):.3f}", f"{model.sum() * 1e6:.3f}",
                     f"{model_sus.sum() * 1e6:.3f}"])
    print(f"wrote {path}: chain {statistics.median(chain):.1f} us, layers alone {sum(meds):.1f} us, "
          f"model {model.sum() * 1e6:.1f} us (sustained {model_sus.sum() * 1e6:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
