"""Run cuBLAS GEMMs (torch.matmul) on a few shapes, for Nsight Compute to read their memory counters.

Each shape runs 3 times on fresh random inputs (never zeros); profile the last of each, e.g.::

    ncu --clock-control none --csv --metrics <list> --kernel-name regex:nvjet \\
        python validation/ncu_cublas_probe.py fp16 8192,8200,16 8192,8192,16

Shapes are ``m,n,k`` of row-major ``C[m,n] = A[m,k] @ B[k,n]`` (as the cuBLAS datasets time them).
"""

from __future__ import annotations

import sys

LAUNCHES = 3


def main(argv: list[str]) -> int:
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[argv[0]]
    gen = torch.Generator(device="cuda").manual_seed(0)
    for spec in argv[1:]:
        m, n, k = (int(v) for v in spec.split(","))
        a = torch.randn(m, k, device="cuda", dtype=dtype, generator=gen)
        b = torch.randn(k, n, device="cuda", dtype=dtype, generator=gen)
        c = torch.empty(m, n, device="cuda", dtype=dtype)
        for _ in range(LAUNCHES):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
