"""Build the cuBLAS / cuDNN configuration catalogues from the kernels a profiler saw run.

Reads measured datasets with a ``kernel`` column (';'-joined kernel names of one call) and a
``kernel_launch`` column (each kernel's ``grid/block/r<regs>/s<smem>``), parses each call's main
kernel (``wavemodel.kernel_names``), and counts configurations per dtype class and family. A
configuration's threads, registers and shared memory are the ones it launched with (so occupancy is
what the hardware had); split-K factors are read from the grid: CTAs launched over output tiles,
capped by the SM count for persistent kernels. Writes ``wavemodel/data/configs/<backend>_sm90.toml``
with, per class and family, the most frequent configurations, each split family with its most
frequent split factors, or (``--split-ladder``) CUTLASS / xmma split families with a ladder of
factors up to the largest seen: cuBLAS sizes their split-K to the shape (2 to 252 on the H100, no one
rule matching more than about 60 % of the launches), so the selection rule sizes it too.

Usage: PYTHONPATH=. python validation/build_catalogue.py --backend cublas DATA.csv [...] [--top 24]
       [--fit-tile-m 8] [--split-ladder]
The shipped H100 catalogue: --top 12 --top-split 3 --splits 3 --fit-tile-m 8 --split-ladder
on validation/data/h100-sxm/gemm_cublas.csv.
"""

from __future__ import annotations

import argparse
import collections
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from wavemodel.kernel_names import KernelName, main_kernel

IN_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "tf32": 4, "fp32": 4}
SM_COUNT = 132


@dataclass(frozen=True)
class Klass:
    """A dtype class: which dtypes share a kernel family, and whether they are 16-byte aligned."""

    name: str
    dtypes: tuple
    aligned: bool


def klass_of(dtype: str, aligned: bool) -> Klass:
    tag = "aligned" if aligned else "any"
    if dtype in ("fp16", "bf16"):
        return Klass(f"half_{tag}", ("fp16", "bf16"), aligned)
    return Klass(f"{dtype}_{tag}", (dtype,), aligned)


def family_of(k: KernelName, klass: Klass, name: str) -> str:
    if k.family == "nvjet":
        return "nvjet_fp8" if klass.dtypes == ("fp8",) else "nvjet"
    if k.family == "xmma_conv":
        return "xmma_conv_sm90" if name.startswith("sm90") else "xmma_conv_sm80"
    if k.family == "cutlass_conv":
        return "cutlass_conv"
    if k.math == "simt":      # the fallbacks cuBLAS runs on misaligned operands fit apart
        return "simt_f32" if klass.aligned else "simt_f32_any"
    if klass.dtypes == ("tf32",):
        return "tf32_sm90" if name.startswith("sm90") else "tf32_sm80"
    return "cutlass_fallback" if not klass.aligned else k.family


@dataclass(frozen=True)
class Launch:
    grid: int
    threads: int
    regs: int
    smem: int


def parse_launch(text: str) -> Launch | None:
    try:
        g, b, r, s = text.split("/")
        grid = math.prod(int(v) for v in g.split("x"))
        return Launch(grid, math.prod(int(v) for v in b.split("x")), int(r[1:]), int(s[1:]))
    except (ValueError, IndexError):
        return None


def split_of(k: KernelName, launch: Launch, tiles: int, persistent: bool) -> int:
    """Split-K factor a call ran with: its CTAs per output tile (1 when the grid says nothing more)."""
    if tiles <= 0 or launch.grid <= tiles:
        return 1
    if persistent and launch.grid >= SM_COUNT - max(k.cluster_m * k.cluster_n, 1) + 1 and not k.split_k:
        return 1
    return max(1, launch.grid // tiles)


def rows_of(paths, only_set: str | None = "calibration"):
    """Library rows with kernel names; by default only the calibration set (the catalogue is part of
    the model, so shapes held out for evaluation must not shape it)."""
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                names = r.get("kernel") or r.get("kernels") or ""
                library = r.get("backend", "cublas") in ("cublas", "cudnn")
                in_set = only_set is None or r.get("set", only_set) == only_set
                first_pass = r.get("pass", "1") == "1"
                if names and not names.startswith("ERROR") and library and first_pass and in_set:
                    yield r, names


def tiles_of(r: dict, k: KernelName, conv: bool) -> int:
    if conv:
        n, h, w, kk = (int(r[x]) for x in ("n", "h", "w", "k"))
        r_, s, st, pad = (int(r[x]) for x in ("r", "s", "stride", "padding"))
        p = (h + 2 * pad - r_) // st + 1
        q = (w + 2 * pad - s) // st + 1
        m, nn, b = n * p * q, kk, 1
    else:
        m, nn, b = int(r["m"]), int(r["n"]), int(r.get("batch", 1))
    return b * math.ceil(m / k.tile_m) * math.ceil(nn / k.tile_n)


def collect(paths, conv: bool, only_set: str | None = "calibration"):
    """Counts of (class, family, tile...) and, per key, the launches and split factors seen."""
    counts = collections.Counter()
    launches = collections.defaultdict(collections.Counter)
    splits = collections.defaultdict(collections.Counter)
    names = {}
    for r, kernel in rows_of(paths, only_set):
        name, k = main_kernel(kernel, conv)
        if k.tile_m == 0:
            continue
        if conv:
            aligned = int(r["c"]) % 8 == 0 and int(r["k"]) % 8 == 0
        else:
            aligned = int(r["n"]) % 8 == 0 and int(r["k"]) % 8 == 0
        klass = klass_of(r["dtype"], aligned)
        fam = family_of(k, klass, name)
        key = (klass, fam, k.tile_m, k.tile_n, k.tile_k, max(k.stages, 1), k.cluster_m, k.cluster_n, k.math,
               k.alignment)
        counts[key] += 1
        names.setdefault(key, name)
        geo = kernel.split(";").index(name)
        geometry = (r.get("kernel_launch") or "").split(";")
        launch = parse_launch(geometry[geo] if geo < len(geometry) else "")
        if launch:
            launches[key][(launch.threads, launch.regs, launch.smem)] += 1
            persistent = fam.startswith("nvjet") or name.startswith("sm90")
            splits[key][split_of(k, launch, tiles_of(r, k, conv), persistent)] += 1
    return counts, launches, splits, names


def config_toml(key, name, geometry, split, count, variant: int = 0, fit_tile_m: int = 0) -> str:
    klass, fam, tm, tn, tk, stages, cm, cn, math_unit, align = key
    threads, regs, smem = geometry
    persistent = fam.startswith("nvjet") or name.startswith("sm90")
    need = 16 // IN_BYTES[klass.dtypes[0]] if klass.aligned else 1
    sk = f"_sk{split}" if split > 1 else ""
    plain = fam.startswith("nvjet") and name.endswith(("TNN", "TNT"))   # cuDNN calling a GEMM kernel
    return "\n".join([
        f"# seen {count} times",
        "[[config]]",
        f'name = "{fam}_{tm}x{tn}x{tk}_s{stages}_c{cm}x{cn}_a{align or need}{sk}_{klass.name}'
        + (f'_v{variant + 1}"' if variant else '"'),
        f'family = "{fam}{"_splitk" if split > 1 else ""}"',
        f"tile_m = {tm}", f"tile_n = {tn}", f"tile_k = {tk}", f"stages = {stages}",
        f"cluster_m = {cm}", f"cluster_n = {cn}", f"split_k = {split}",
        f"threads = {threads}", f"regs_per_thread = {regs}", f"smem_per_block_bytes = {smem}",
        f'math = "{math_unit}"', "dtypes = [" + ", ".join(f'"{d}"' for d in klass.dtypes) + "]",
        f"alignment_elements = {need}", f"persistent = {'true' if persistent else 'false'}",
        f"only_misaligned = {'true' if (not klass.aligned and klass.dtypes != ('fp32',)) else 'false'}",
        f"plain_gemm_only = {'true' if plain else 'false'}",
        # nvjet sizes its M tile to the problem (multiples of 8 up to its largest): the model sizes it
        *([f"tile_m_granule = {fit_tile_m}"] if fit_tile_m and fam.startswith("nvjet") else []),
        f'source = "{name[:120]}"', "",
    ])


SPLIT_LADDER = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)   # about x1.5 apart


def build(paths, backend: str, top: int, top_split: int = 6, splits_per_tile: int = 4, ladder: bool = False,
          only_set: str | None = "calibration", fit_tile_m: int = 0) -> str:
    conv = backend == "cudnn"
    counts, launches, splits, names = collect(paths, conv, only_set)
    by_class = collections.defaultdict(list)
    for key, c in counts.items():
        by_class[(key[0].name, key[1])].append((c, key))
    out = [
        f"# {backend} on sm_90 (H100, H200), built by validation/build_catalogue.py from the kernels",
        "# torch.profiler saw run on an H100 (CUDA 13) in the datasets below: names give the tile, K tile,",
        "# stages and cluster; the launch gives threads, registers, shared memory and split-K factor. Tiles",
        "# are in the GEMM's row-major orientation (tile_m along M: output rows, or pixels of a conv).",
        "# Per dtype class, alignment and family: the most frequent configurations (count in comments).",
        "# Sources: " + ", ".join(Path(p).name for p in paths)
        + (f" (rows of the {only_set} set only)" if only_set else ""),
        "",
        "[defaults]",
        f'kind = "{"conv" if conv else "gemm"}"',
        "",
    ]
    # keys that differ only in what a name does not show (e.g. xmma's indexed and indexed_wo_smem
    # kernels) get numbered variants
    seen_names: dict = collections.Counter()
    variants = {}
    for key in sorted(counts, key=lambda k: -counts[k]):
        klass, fam, tm, tn, tk, stages, cm, cn, _, align = key
        short = (klass.name, fam, tm, tn, tk, stages, cm, cn, align or 16 // IN_BYTES[klass.dtypes[0]])
        variants[key] = seen_names[short]
        seen_names[short] += 1
    total = 0
    for (kname, fam), items in sorted(by_class.items()):
        items.sort(key=lambda x: -x[0])
        kept = items[:top]
        seen = sum(c for c, _ in items)
        out.append(f"# ---- {kname} / {fam}: {len(kept)} of {len(items)} configurations, covering "
                   f"{sum(c for c, _ in kept)} of {seen} calls")
        split_family = collections.Counter()
        for _, key in items:
            for s, c in splits[key].items():
                if s > 1:
                    split_family[s] += c
        common_splits = sorted(s for s, _ in split_family.most_common(splits_per_tile))
        if ladder and split_family and not fam.startswith("nvjet"):
            # cuBLAS sizes a CUTLASS / xmma kernel's split-K to the shape (2 to 252 seen, no one rule
            # matching more than ~60 % of the launches): a ladder of factors up to the largest seen
            # lets the selection rule size it
            common_splits = [s for s in SPLIT_LADDER if s <= max(split_family)] or common_splits
        split_calls = {key: sum(v for s, v in splits[key].items() if s > 1) for _, key in items}
        ranked = sorted(split_calls, key=lambda k: -split_calls[k])
        split_keys = [k for k in ranked if split_calls[k]][:top_split]
        for c, key in kept:
            geometry = launches[key].most_common(1)[0][0] if launches[key] else (256, 128, 49152)
            out.append(config_toml(key, names[key], geometry, 1, c, variants[key], fit_tile_m))
            total += 1
        for key in split_keys:
            geometry = launches[key].most_common(1)[0][0] if launches[key] else (256, 128, 49152)
            for s in common_splits:
                out.append(config_toml(key, names[key], geometry, s, splits[key].get(s, 0), variants[key],
                                       fit_tile_m))
                total += 1
    out.insert(6, f"# {total} configurations")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--backend", choices=("cublas", "cudnn"), required=True)
    ap.add_argument("--top", type=int, default=24, help="configurations kept per class and family")
    ap.add_argument("--top-split", type=int, default=6, help="of those, how many also get split-K variants")
    ap.add_argument("--splits", type=int, default=4, help="split factors per split-K tile (most frequent)")
    ap.add_argument("--split-ladder", action="store_true",
                    help="non-nvjet split-K tiles get a ladder of factors (2, 3, 4, 6, ... up to the largest "
                         "seen) instead of the most frequent ones")
    ap.add_argument("--fit-tile-m", type=int, default=0, metavar="GRANULE",
                    help="nvjet configurations size their M tile to the problem in multiples of GRANULE, "
                         "filling whole waves (tile_m_granule; 0: the tile as seen)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    text = build(args.data, args.backend, args.top, args.top_split, args.splits, args.split_ladder,
                 fit_tile_m=args.fit_tile_m)
    out = args.out or f"wavemodel/data/configs/{args.backend}_sm90.toml"
    Path(out).write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
