"""validation/build_catalogue.py: split-K factors of a split family, most frequent or a ladder."""

from __future__ import annotations

import csv
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import build_catalogue as B  # noqa: E402

CUTLASS = ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_64x64_16x6_nn_align4>"
           "(cutlass_80_tensorop_s1688gemm_64x64_16x6_nn_align4::Params)")
REDUCE = "void cublasLt::splitKreduce_kernel<32, 16, int, float>(cublasLt::cublasSplitKParams<float>)"
NVJET = "nvjet_sm90_hsh_128x256_64x4_2x1_v_bz_splitK_NNT"


def write(path: Path, calls) -> Path:
    """calls: (kernel, m, n, k, dtype, grid) with grid the main kernel's CTA count."""
    fields = ["kernel", "backend", "dtype", "batch", "m", "n", "k", "latency_us_median", "set", "pass",
              "kernel_launch"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for kernel, m, n, k, dtype, grid in calls:
            launch = f"1x1x{grid}/128x1x1/r88/s49152" + (";1x1x1/32x16x1/r32/s0" if REDUCE in kernel else "")
            w.writerow({"kernel": kernel, "backend": "cublas", "dtype": dtype, "batch": 1, "m": m, "n": n,
                        "k": k, "latency_us_median": 10.0, "set": "calibration", "pass": 1,
                        "kernel_launch": launch})
    return path


def splits(text: str, family: str) -> list[int]:
    doc = tomllib.loads(text)
    return sorted(c["split_k"] for c in doc["config"] if c["family"] == family)


def test_ladder_spans_the_factors_seen_and_leaves_nvjet_alone(tmp_path):
    # one 64x64 output tile (m = n = 64) split 4, 9 and 40 ways; nvjet's 128x256 tile split 2 and 3 ways
    calls = [(f"{CUTLASS};{REDUCE}", 64, 64, 4096, "tf32", s) for s in (4, 4, 9, 40)]
    calls += [(f"{NVJET};{REDUCE}", 256, 128, 4096, "fp16", s) for s in (2, 2, 3)]
    data = write(tmp_path / "gemm_cublas.csv", calls)
    frequent = B.build([str(data)], "cublas", top=4, top_split=2, splits_per_tile=2)
    assert splits(frequent, "tf32_sm80_splitk") == [4, 9]               # the two most frequent
    ladder = B.build([str(data)], "cublas", top=4, top_split=2, splits_per_tile=2, ladder=True)
    assert splits(ladder, "tf32_sm80_splitk") == [s for s in B.SPLIT_LADDER if s <= 40]
    assert splits(ladder, "nvjet_splitk") == splits(frequent, "nvjet_splitk") == [2, 3]


def test_catalogue_is_built_from_calibration_rows_only(tmp_path):
    data = write(tmp_path / "gemm_cublas.csv", [(f"{CUTLASS};{REDUCE}", 64, 64, 4096, "tf32", 64)])
    with open(data, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["set"] = "evaluation"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert "[[config]]" not in B.build([str(data)], "cublas", top=4, ladder=True)
