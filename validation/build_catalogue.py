"""Build the cuBLAS / cuDNN configuration catalogues from the kernel names a profiler reported.

Reads measured datasets (a ``kernel`` or ``kernels`` column of ';'-joined kernel names), parses each
call's main kernel (``wavemodel.kernel_names``), counts configurations per dtype class and family, and
writes ``wavemodel/data/configs/<backend>_sm90.toml`` with the most frequent configurations of each
class. Split-K kernels get one configuration per split factor the profiler's grid showed (or 2, 4, 8
when the grid is unknown).

Usage: PYTHONPATH=. python validation/build_catalogue.py --backend cublas DATA.csv [...] [--top 24]
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from wavemodel.kernel_names import KernelName, main_kernel

IN_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "tf32": 4, "fp32": 4}
SMEM_MAX = 232448 - 1024


@dataclass(frozen=True)
class Klass:
    """A dtype class: which dtypes share a kernel family, and the alignment they need."""

    name: str
    dtypes: tuple
    aligned: bool


def klass_of(dtype: str, aligned: bool) -> Klass:
    if dtype in ("fp16", "bf16"):
        return Klass(f"half_{'aligned' if aligned else 'any'}", ("fp16", "bf16"), aligned)
    return Klass(f"{dtype}_{'aligned' if aligned else 'any'}", (dtype,), aligned)


def family_of(k: KernelName, klass: Klass, name: str) -> str:
    if k.family == "nvjet":
        return "nvjet_splitk" if k.split_k else ("nvjet_fp8" if klass.dtypes == ("fp8",) else "nvjet")
    if k.family == "xmma_conv":
        return "xmma_conv_sm90" if name.startswith("sm90") else "xmma_conv_sm80"
    if k.math == "simt":
        return "simt_f32"
    if klass.dtypes == ("tf32",):
        return "tf32_sm90" if name.startswith("sm90") else "tf32_sm80"
    return f"{k.family}_align{min(k.alignment or 1, 8)}" if not klass.aligned else k.family


def threads_of(k: KernelName, name: str) -> int:
    if k.family in ("nvjet", "xmma_conv") and ("warpgroup" in name or k.family == "nvjet"):
        return 384 if (k.cooperative or k.tile_m * k.tile_n >= 128 * 128) else 256
    import re

    w = re.search(r"warpsize(\d+)x(\d+)x(\d+)", name)
    if w:
        return 32 * int(w[1]) * int(w[2]) * int(w[3])
    return 256 if k.tile_m * k.tile_n >= 128 * 128 else 128


def rows_of(paths):
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                names = r.get("kernel") or r.get("kernels") or ""
                library = r.get("backend", "cublas") in ("cublas", "cudnn")
                if not names or names.startswith("ERROR") or not library:
                    continue
                yield r, names


def collect(paths, conv: bool):
    counts = collections.Counter()
    examples = {}
    for r, names in rows_of(paths):
        name, k = main_kernel(names, conv)
        if k.tile_m == 0:
            continue
        if conv:
            aligned = int(r["c"]) % 8 == 0 and int(r["k"]) % 8 == 0
        else:
            aligned = int(r["n"]) % 8 == 0 and int(r["k"]) % 8 == 0
        klass = klass_of(r["dtype"], aligned)
        fam = family_of(k, klass, name)
        key = (klass, fam, k.tile_m, k.tile_n, k.tile_k, k.stages, k.cluster_m, k.cluster_n, k.math,
               k.alignment)
        counts[key] += 1
        examples.setdefault(key, (name, threads_of(k, name), "memset" in names.split(";")))
    return counts, examples


def toml_config(key, example, split, in_b) -> str:
    klass, fam, tm, tn, tk, stages, cm, cn, math, align = key
    name, threads, _ = example
    stages = max(stages, 1)
    smem = min(SMEM_MAX, stages * (tm + tn) * tk * in_b + 1024)
    persistent = fam.startswith("nvjet") or fam.endswith("sm90")
    need = 16 // in_b if klass.aligned else 1
    sk = f"_sk{split}" if split > 1 else ""
    lines = [
        "[[config]]",
        f'name = "{fam}_{tm}x{tn}x{tk}_s{stages}_c{cm}x{cn}{sk}_{klass.name}"',
        f'family = "{fam}"',
        f"tile_m = {tm}", f"tile_n = {tn}", f"tile_k = {tk}", f"stages = {stages}",
        f"cluster_m = {cm}", f"cluster_n = {cn}", f"split_k = {split}",
        f"threads = {threads}", f"regs_per_thread = {168 if persistent else 128}",
        f"smem_per_block_bytes = {smem}", f'math = "{math}"',
        f"dtypes = {list(klass.dtypes)}".replace("'", '"'),
        f"alignment_elements = {need}", f"persistent = {'true' if persistent else 'false'}",
        f'source = "{name[:110]}"',
    ]
    return "\n".join(lines) + "\n"


def build(paths, backend: str, top: int, top_split: int = 6, splits=(2, 4, 8)) -> str:
    conv = backend == "cudnn"
    counts, examples = collect(paths, conv)
    by_class = collections.defaultdict(list)
    for key, c in counts.items():
        by_class[(key[0].name, key[1])].append((c, key))
    out = [
        f"# {backend} on sm_90 (H100, H200), built by validation/build_catalogue.py from the kernel names",
        "# torch.profiler reported on an H100 (CUDA 13) for the datasets named below. Tiles are in the",
        "# GEMM's row-major orientation (tile_m along M = output rows / pixels). One class per dtype group",
        "# and alignment; per family, the most frequent configurations (count in the comment).",
        "# Sources: " + ", ".join(Path(p).name for p in paths),
        "",
        "[defaults]",
        f'kind = "{"conv" if conv else "gemm"}"',
        "",
    ]
    total = 0
    for (kname, fam), items in sorted(by_class.items()):
        items.sort(key=lambda x: -x[0])
        kept = items[:top_split if fam == "nvjet_splitk" else top]
        seen = sum(c for c, _ in items)
        cover = sum(c for c, _ in kept)
        out.append(f"# ---- {kname} / {fam}: {len(kept)} of {len(items)} configurations, "
                   f"covering {cover} of {seen} calls")
        for c, key in kept:
            in_b = IN_BYTES[key[0].dtypes[0]]
            for split in (splits if fam == "nvjet_splitk" else (1,)):
                out.append(f"# seen {c} times")
                out.append(toml_config(key, examples[key], split, in_b))
                total += 1
    out.insert(5, f"# {total} configurations")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--backend", choices=("cublas", "cudnn"), required=True)
    ap.add_argument("--top", type=int, default=24, help="configurations kept per class and family")
    ap.add_argument("--top-split", type=int, default=6, help="split-K tiles kept (each x 3 factors)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    text = build(args.data, args.backend, args.top, args.top_split)
    out = args.out or f"wavemodel/data/configs/{args.backend}_sm90.toml"
    Path(out).write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
