"""``wavemodel gpus``: the GPU catalogue (or the named GPUs) as a table or JSON."""

from __future__ import annotations

from ..gpus import catalogue, gpu
from . import add_json_argument, print_json, table


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gpus", help="list the GPU catalogue",
                              description="List the GPUs the model knows (all, or the ones named).")
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue names or aliases (default: all)")
    add_json_argument(p)


def run(args) -> int:
    specs = [gpu(n) for n in args.names] if args.names else list(catalogue().values())
    if args.json:
        print_json(specs)
        return 0
    headers = ["name", "SMs", "arch", "boost MHz", "L2 MiB", "DRAM GB/s", "fp16 TFLOP/s", "fp32 TFLOP/s",
               "device", "aliases"]
    rows = [[s.name, s.sm_count, s.arch, f"{s.boost_clock_mhz:.0f}", f"{s.l2_bytes / 2**20:.0f}",
             f"{s.dram_bandwidth_bytes_per_s / 1e9:.0f}", f"{s.peak_flops_per_s['fp16'] / 1e12:.1f}",
             f"{s.peak_flops_per_s['fp32'] / 1e12:.1f}", s.display_name, ", ".join(s.aliases)]
            for s in specs]
    print(table(rows, headers))
    return 0
