"""Launch one of our kernels on a few shapes, for Nsight Compute to read its memory counters.

Each shape is launched 3 times (fresh random fp16/fp32 inputs, never zeros); profile the last launch
of each, e.g. on a GPU::

    PYTHONPATH=. ncu --launch-skip-before-match 2 --launch-count 1 --metrics <list> --csv \\
        python validation/ncu_probe.py conv_f16_128x64 8,408,28,28,368,3,3,1,1

Shapes: ``m,n,k`` for a GEMM kernel, ``n,c,h,w,k,r,s,stride,padding`` for a conv kernel.
"""

from __future__ import annotations

import sys

import numpy as np

LAUNCHES = 3


def main(argv: list[str]) -> int:
    import cupy

    from wavemodel.hardware import kernels as K

    kern = K.get(argv[0])
    rng = cupy.random.default_rng(0)
    for spec in argv[1:]:
        dims = [int(v) for v in spec.split(",")]
        if kern.kind == "conv":
            n, c, h, w, k, r, s, stride, pad = dims
            p, q = K.conv_output_hw(h, w, r, s, stride, pad)
            x = rng.standard_normal((n, h, w, c), dtype=np.float32).astype(kern.np_dtype)
            f = rng.standard_normal((k, r, s, c), dtype=np.float32).astype(kern.np_dtype)
            y = cupy.empty((n, p, q, k), dtype=kern.np_dtype)
            for _ in range(LAUNCHES):
                kern.launch_conv(x, f, y, stride, pad)
        else:
            m, n, k = dims
            a = rng.standard_normal((m, k), dtype=np.float32).astype(kern.np_dtype)
            b = rng.standard_normal((k, n), dtype=np.float32).astype(kern.np_dtype)
            c = cupy.empty((m, n), dtype=kern.np_dtype)
            for _ in range(LAUNCHES):
                kern.launch(a, b, c)
        cupy.cuda.get_current_stream().synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
