"""Why one call costs more than its tiles say: the alignment terms of the model that apply to it.

``alignment_penalties(shape, config)`` lists, in words, each alignment-dependent term of
``wavemodel.latency`` that the configuration (as calibrated: ``Prediction.config``) charges this call:
rows of A at one offset of their 128-byte lines, operand or output rows off 16 bytes (element-wise
loads and stores), rows of C off 32-byte sectors (partial-sector writes), a convolution's input
channels off 32-byte sectors, and a library's fallback for operands off 16 bytes. Pure: no I/O.
One scalar shape at a time.
"""

from __future__ import annotations

import numpy as np

from .configs import KernelConfig
from .latency import (
    LINE_BYTES,
    SECTOR_BYTES,
    channels_off_sectors,
    line_aligned_rows,
    panel_traffic_factors,
    rows_off_lines,
    rows_off_sectors,
)
from .shapes import DTYPE_IN_BYTES, DTYPE_OUT_BYTES, Conv2d, as_shape

MATERIAL_FACTOR = 1.005     # a fitted slowdown factor below this (printed as x1.00) is not named


def alignment_penalties(shape, cfg: KernelConfig) -> list[str]:
    """One line per alignment term that ``cfg`` charges ``shape`` (empty where none applies)."""
    shape = as_shape(shape)
    g = shape.gemm() if isinstance(shape, Conv2d) else shape
    for name in ("m", "n", "k", "batch"):
        if np.ndim(getattr(g, name)):
            raise ValueError(f"shape: alignment_penalties takes one shape, got an array for {name}")
    in_b, out_b = DTYPE_IN_BYTES[g.dtype], DTYPE_OUT_BYTES[g.dtype]
    vec_in, vec_out = 16 // in_b, 16 // out_b
    k, n = int(g.k), int(g.n)
    out = []
    if cfg.line_aligned_rows_factor >= MATERIAL_FACTOR and bool(line_aligned_rows(k, g.dtype)):
        out.append(f"rows of A start at one offset of their {LINE_BYTES}-byte lines (K x {in_b} B = "
                   f"{k * in_b} B): main loop x{cfg.line_aligned_rows_factor:.2f}")
    if cfg.scalar_load_bytes_per_s:
        for operand, d, dim in (("A", k, "K"), ("B", n, "N")):
            if d % vec_in:
                out.append(f"rows of {operand} are not 16-byte aligned ({dim} = {d}, not a multiple of "
                           f"{vec_in}): {operand} is loaded element by element")
    if (cfg.scalar_store_factor != 1 or cfg.scalar_write_bytes_per_s) and n % vec_out:
        out.append(f"rows of C are not 16-byte aligned (N = {n}, not a multiple of {vec_out}): C is stored "
                   f"element by element")
    if cfg.off_sector_write_factor >= MATERIAL_FACTOR and bool(rows_off_sectors(n, g.dtype)):
        rows, dim = ("output pixels", "K") if isinstance(shape, Conv2d) else ("rows of C", "N")
        out.append(f"{rows} start off {SECTOR_BYTES}-byte sectors ({dim} x {out_b} B = {n * out_b} B): "
                   f"the output's DRAM writes x{cfg.off_sector_write_factor:.2f}")
    if cfg.partial_line_write_factor >= MATERIAL_FACTOR and bool(rows_off_lines(n, g.dtype)):
        rows, dim = ("output pixels", "K") if isinstance(shape, Conv2d) else ("rows of C", "N")
        out.append(f"{rows} start off {LINE_BYTES}-byte lines ({dim} x {out_b} B = {n * out_b} B): "
                   f"the output's DRAM writes x{cfg.partial_line_write_factor:.2f}")
    charged = []
    if isinstance(shape, Conv2d):   # the L2 factors of this call's input and filter rows (their sectors)
        factors = (float(f) for f in panel_traffic_factors(cfg, shape, g.dtype))
        l2 = [f"x{f:.2f} ({what} rows)" for what, f in zip(("input", "filter"), factors, strict=True)
              if f >= MATERIAL_FACTOR]
        charged += [f"L2 traffic {', '.join(l2)}"] if l2 else []
        if cfg.channel_dram_factor >= MATERIAL_FACTOR:
            charged.append(f"DRAM time x{cfg.channel_dram_factor:.2f}")
    if isinstance(shape, Conv2d) and charged and bool(channels_off_sectors(shape, g.dtype)):
        out.append(f"input channels start off {SECTOR_BYTES}-byte sectors (C x {in_b} B = "
                   f"{int(shape.c) * in_b} B): {', '.join(charged)}")
    if cfg.only_misaligned:
        out.append("operand rows are not 16-byte aligned: the library runs its fallback kernel for them")
    return out

