"""``predict_latency``: device time of one GEMM or convolution call from tiling, occupancy and waves.

For one kernel configuration the time of a call is

    kernel_fixed (+ first-wave CTAs) + max(t_compute, t_memory) (+ unhidden part) + extra kernels

(a persistent kernel with more tiles than CTAs launches a memset before it; split-K adds a reduction)

- ``t_compute`` is the wave-quantised math time of the busiest SM: every full wave takes ``bps *
  t_tile`` (the SM's ``bps`` resident blocks share its math rate; ``t_tile`` is one tile's
  ``2*tile_m*tile_n*K`` FLOPs, K rounded up to whole K tiles, at ``efficiency`` of the SM's peak),
  the last, partial wave ``max(j' * t_tile, bps * t_tile / single_block_speedup)`` for ``j`` blocks
  on that SM, ``j'`` the blocks its busiest warp scheduler's share is worth (``scheduler_slots``: ``j``
  itself unless a block has fewer warps than the SM has schedulers, or not a multiple of them: two-warp
  blocks take as long in threes as in fours); each of the busiest SM's tiles adds ``tile_overhead``
  (prologue, pipeline fill) and, where a family's ``store_bytes_per_s`` is set, its epilogue: a tile's
  valid outputs (the call's outputs over its tiles: edge tiles store only their valid part) at that
  rate, ``scalar_store_factor`` times slower where rows of C are not 16-byte aligned (element-wise
  stores); where ``last_tile_full`` is set the last of them is a full interior tile (the call ends
  with its slowest tile: ``epilogue_bytes``). Where ``epilogue_drains_c`` is set, C's DRAM writes are
  the epilogues' and not the DRAM term's: the busiest SM's epilogues last at least the call's C
  writes at the DRAM write rate (``c_write_s``; a kernel that stores C from registers after its main
  loop cannot hide them under it). Where a family's ``scalar_load_bytes_per_s`` is set, every K tile
  also costs the bytes of each operand panel whose rows are not 16-byte aligned (A where K, B where N
  is not a multiple of ``16 / in_bytes``) at that rate: the kernel loads those element-wise, four
  instructions and their bounds checks for each vector, issued by the schedulers that do the math
  (``scalar_load_s``).
- ``t_dram`` is the compulsory DRAM traffic (each operand read once, the output written once, split-K
  partials written and read back; for a convolution the real activation, filter and output tensors,
  a strided 1x1 filter's input rows in the whole 128-byte lines its pixels touch,
  ``strided_window_bytes``) at ``bandwidth_efficiency`` of the DRAM bandwidth; where a family's
  ``write_bandwidth_efficiency`` is set, the output's writes at that fraction instead (reads and
  writes share the DRAM, so the two times add: write-bound small-K GEMMs store C at well under the
  read bandwidth). Where a family's
  ``scalar_write_bytes_per_s`` is set and rows of C are not 16-byte aligned, C's element-wise writes
  (partial-sector writes, every SM's together) add their time at that rate (``scalar_write_s``);
  where its ``off_sector_write_factor`` is set and rows of C start off 32-byte sectors (fp16 N % 16
  == 8), C's bytes cost that many times their write time (``off_sector_write_s``); where its
  ``partial_line_write_factor`` is set and rows of C start off 128-byte lines (fp16 N % 64 != 0), the
  same with that factor (``partial_line_write_s``: our convs' tiles then share their rows' end lines
  with the neighbouring tiles). Where a conv
  kernel walks its K loop tap by tap (``taps_reread_past_l2``: our tc_f16_conv), a tap pass of the
  running CTAs' pixels that outgrows the L2 loses the next taps' reuse, and the input comes back
  from DRAM about once per tap (``tap_reread_bytes``). A convolution whose channel rows start off
  32-byte sectors, gathered 16 bytes at a time, streams the same DRAM bytes more slowly (twice the L2
  requests for them): ``channel_dram_factor`` times the DRAM time (``channel_dram_slowdown``).
- ``t_l2`` is the traffic into the SMs: every tile streams its A and B panels (``(tile_m + tile_n) x
  K`` elements) out of L2, all tiles through the L2's bandwidth (panels a cluster shares are read
  once and multicast), and the busiest SM's tiles through what one SM can ingest; so small tiles,
  few busy SMs and convolutions' re-read activations pay here.
  A kernel may reach its own L2 and per-SM bandwidths (our kernels: fitted per kernel), and a
  convolution whose channel rows start off 32-byte sectors moves more than its panels' bytes: each
  panel by the sectors its thread pairs touch per sector of bytes (``channel_sector_ratios``: 1.5 where
  the pixels start on and off sectors by turns, from 1 to 2 where a strided conv's taps fix the
  pixels' parity), scaled so that 1.5 costs ``channel_traffic_factor`` (``panel_traffic_factors``).
  Where a conv kernel zero-fills the taps that fall in the padding instead of loading them
  (``padding_loads_free``: our tc_f16_conv passes cp.async a source size of 0 there), its A panel
  moves only the share of rows inside the input
  (``valid_tap_fraction``: 0.82 for a 3x3 pad-1 filter over 7x7 images, 0.98 over 112x112).
  Where it zero-fills the rows of an edge tile that lie past M (A) or N (B) the same way
  (``edge_loads_free``: tc_f16_conv's row masks), a tile's panels move only its valid rows, on average
  ``M / tiles_m`` and ``N / tiles_n`` (``valid_panel_rows``): a conv with K = 24 output channels
  streams a 24-row filter panel, not 128 rows.
  Where a configuration has ``l2_counts_writes`` its output's writes (``written_bytes``: C, or the
  split-K partials) pass through the L2 beside the panel reads and add to ``t_l2`` (our convs:
  Nsight Compute on the H100 shows a one-wave 1x1 conv's busiest SM slow down as the edge tile's
  stores grow, validation/data/h100-sxm/ncu_stair_rises/; 2-fold CV on the calibration rows: p90
  10.33 -> 9.94 % and 9.54 -> 8.72 %; for cuBLAS and our GEMMs the same CV shows no robust gain, so
  they leave it off).
- ``t_memory`` is the longest of ``t_dram`` and ``t_l2``'s two bounds, the L2's and the busiest SM's
  (``streams_s``). Where a configuration has ``dram_l2_norm`` (our convs: 2), ``t_dram`` and the L2's
  bound combine instead as that p-norm, ``(t_dram**2 + t_l2**2)**(1/2)``, and the SM's ingest stays a
  bound of its own: every DRAM byte is filled into or drained from an L2 slice, so where the two
  streams are of a size their requests queue behind each other at the slices. 2-fold CV on the
  calibration conv rows (four random splits): 1142 -> 993 rows past 8 % over the eight held-out
  folds, every fold gaining (p = 1.75 and 2.5: 1002 and 997); 400 fresh convs timed on another board,
  read by no fit: 119 -> 98 rows past 8 % of 800. Our GEMMs refitted with it score the same as
  without, so they leave it off (validation/data/h100-sxm/conv_own_extra.md).
- where a family's ``unhidden_fraction`` is set, that share of the shorter of ``t_compute`` and
  ``t_memory`` adds to the longer: the pipeline hides operand streaming and C's stores under
  the math (or the math under the streams) only in part where the two are of a size (our 1- and
  2-block-per-SM ``mma.sync`` kernels leave about half unhidden, fitted). Where a configuration has
  ``smooth_overlap`` the two combine instead as the p-norm ``(t_compute**p + t_memory**p)**(1/p)``,
  ``p = ln 2 / ln(1 + unhidden_fraction)`` (``overlapped_s``): the same share unhidden where the two
  are equal, but the shorter stream hides ever more completely as the longer dominates (it stalls the
  math only where its requests queue behind the other's), where ``max + unhidden * min`` keeps
  charging a fixed share of it (our convs, fitted: a third unhidden at equal sizes; with the stream
  at half the math, 7 % added rather than 16 %).
- ``kernel_fixed`` is one kernel's launch (in a CUDA graph), start-up and drain; where a family's
  ``cta_dispatch_s`` is set, plus that much per CTA of the first wave (``min(tiles, wave_size)``):
  a full grid finishes later than a few CTAs of the same tile. Our block timelines
  (validation/block_trace.py; our convs: validation/data/h100-sxm/block_trace_conv/) show the CTAs
  themselves all starting within 0.2 us; the cost is in their prologues and epilogues competing
  for the memory system (first-wave 128x256 tiles at K = 48
  last 7 to 12 us), fitted 4-20 ns per CTA for our kernels and 7 ns for cuBLAS's nvjet.
- where a family's ``straggler_s`` is set, plus ``straggler_s * H(s)`` for the ``s`` SMs of the last
  wave (``straggler_wait_s``; ``H`` the harmonic number, about ``ln s + 0.58``): the call ends with
  its slowest SM, and the largest of ``s`` random delays grows with ``ln s`` (fitted 0.04-0.22 us
  for our kernels: the slowest of 132 SMs some 1 us behind a lone one).
- where a family's ``k_iter_latency_s`` is set, no wave's math is shorter than ``k_iters *
  k_iter_latency_s``: a CTA's main-loop iteration (TMA load, MMA, barrier hand-off) has a latency that
  a lightly loaded SM cannot hide, whatever the tile's FLOPs (small tiles, single-wave long-K calls).
- where a configuration's ``tile_m_granule`` is set (cuBLAS's nvjet kernels size their M tile to the
  problem, in multiples of 8: 104 rows for M = 6504, N = 104 fill 126 of 132 SMs), ``tile_m`` is the
  largest M tile and each shape runs the smallest multiple of the granule whose tiles fit in as many
  waves as ``tile_m``'s would (``w = ceil(tiles / wave_size)`` with ``tile_m``, so at most
  ``floor(w * wave_size / (batch * tiles_n * split_k))`` tiles along M); the math, the panels and the
  epilogue are that tile's. A partly filled last wave then runs smaller tiles, not idle SMs.

A library backend evaluates every configuration of its catalogue and runs the one its selection
rule picks (``select``). Parameters come from the GPU's calibration profile where one ships.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import calibration
from .configs import KernelConfig, for_filter, library_configs, own_kernels
from .gpus import GPUSpec
from .gpus import gpu as lookup_gpu
from .power import power_floor_s
from .shapes import DTYPE_IN_BYTES, DTYPE_OUT_BYTES, Conv2d, Gemm, as_shape
from .waves import wave_size, waves_of

BOUNDS = ("compute", "memory", "latency")     # and "power" (sustained runs at the power limit)
LIBRARY_BACKENDS = ("cublas", "cudnn")


@dataclass(frozen=True, eq=False)
class Prediction:
    latency_s: np.ndarray | float
    waves: np.ndarray | int
    tiles: np.ndarray | int
    blocks_per_sm: np.ndarray | int
    tail_utilization: np.ndarray | float
    config: object                    # KernelConfig, or an object array of them
    bound: np.ndarray | str           # "compute" | "memory" | "latency" | "power" (sustained=True)
    flops: np.ndarray | float
    compute_s: np.ndarray | float     # wave-quantised math time (no launch overhead)
    memory_s: np.ndarray | float      # the memory streams' time: DRAM, L2 and per-SM ingest (streams_s)
    wave_size: np.ndarray | int
    backend: str
    calibrated: bool                  # whether a measured profile set the model's parameters

    @property
    def achieved_flops_per_s(self):
        return self.flops / self.latency_s

    def __repr__(self) -> str:
        if np.ndim(self.latency_s) == 0:
            return (f"Prediction(latency_s={float(self.latency_s):.4g}, waves={int(self.waves)}, "
                    f"tiles={int(self.tiles)}, blocks_per_sm={int(self.blocks_per_sm)}, "
                    f"tail_utilization={float(self.tail_utilization):.3f}, config={self.config.name!r}, "
                    f"bound={self.bound!r}, backend={self.backend!r})")
        return f"Prediction(shape={np.shape(self.latency_s)}, backend={self.backend!r})"


DRAM_FETCH_BYTES = 128   # the L2 fills a line from DRAM where a read touches any of it (ncu_conv_parity/)


def _window_line_bytes(window, period, base: float):
    """Bytes of ``DRAM_FETCH_BYTES`` lines per window along a long row of windows (``window`` bytes, one
    every ``period``) whose first starts ``base`` bytes into a line. Eight windows repeat the offsets
    within a line (period a multiple of 16: 8 x period a multiple of 128), so the distinct lines of
    eight windows, less the line the eighth may share with the next eight's first, are the row's."""
    line = float(DRAM_FETCH_BYTES)
    first_0 = np.floor(base / line)
    lines, prev_last = 0.0, first_0 - 1
    for j in range(8):
        start = base + j * period
        first, last = np.floor(start / line), np.floor((start + window - 1) / line)
        lines = lines + last - np.maximum(first, prev_last + 1) + 1
        prev_last = last
    lines = lines - (prev_last >= first_0 + 8 * period / line)      # shared with the next eight
    return lines * line / 8


def strided_window_bytes(window_bytes, period_bytes, row_bytes):
    """DRAM bytes fetched per filter window along an input row whose windows (``window_bytes`` each, one
    every ``period_bytes``, multiples of 16) leave gaps: the distinct ``DRAM_FETCH_BYTES`` lines they
    touch (``_window_line_bytes``), where ``row_bytes`` is not a multiple of a line averaged over the
    eight offsets a row may start at (arrays broadcast). Windows that share a line fetch it once: gaps
    under a line cost the whole row.

    Nsight Compute on 1x1 stride-2 convs (validation/data/h100-sxm/ncu_conv_parity/): at C = 24 and
    32 (48 and 64 bytes a pixel) the call reads every pixel of the rows it covers, at C = 200 1.28
    times the pixels it uses; this count gives those reads within 4 %."""
    window, period, aligned = np.broadcast_arrays(np.asarray(window_bytes, dtype=np.float64),
                                                  np.asarray(period_bytes, dtype=np.float64),
                                                  np.mod(row_bytes, DRAM_FETCH_BYTES) == 0)
    # counted once per distinct (window, period, alignment): a few channel counts and strides
    code = (window.ravel() * (period.max(initial=0.0) + 1) + period.ravel()) * 2 + aligned.ravel()
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    w, p, a = window.ravel()[first], period.ravel()[first], aligned.ravel()[first]
    per_offset = [_window_line_bytes(w, p, base) for base in np.arange(0.0, DRAM_FETCH_BYTES, 16.0)]
    counted = np.where(a, per_offset[0], sum(per_offset) / len(per_offset))
    return counted[inverse.reshape(-1)].reshape(window.shape)


def dram_bytes(shape: Gemm | Conv2d, split_k: int = 1):
    """Compulsory DRAM traffic of one call in bytes (arrays broadcast).

    A GEMM reads A and B once and writes C once; a convolution reads its activations and filters
    and writes its output (not the implicit GEMM's R*S-times replicated A). Split-K adds fp32 partial
    tiles written and read back.
    """
    in_b, out_b = DTYPE_IN_BYTES[shape.dtype], DTYPE_OUT_BYTES[shape.dtype]
    f = np.float64
    if isinstance(shape, Conv2d):
        n = np.asarray(shape.n, dtype=f)
        # the input rows (columns) the filter windows cover: contiguous when a window spans at least a
        # stride, else p windows of span rows each (1x1 stride 2: a quarter of the input's pixels)
        def covered(size, out, taps):
            span = shape.dilation * (taps - 1) + 1
            windows = np.where(span >= shape.stride, (out - 1) * shape.stride + span, out * span)
            return np.minimum(size, windows)

        rows, cols = covered(shape.h, shape.p, shape.r), covered(shape.w, shape.q, shape.s)
        pixel_bytes = np.asarray(shape.c, dtype=f) * in_b
        row_inputs = cols * pixel_bytes                 # bytes of one covered input row
        span_s = shape.dilation * (shape.s - 1) + 1
        gaps = span_s < shape.stride                    # a row's windows leave gaps: whole lines move
        if np.any(gaps):              # counted where the windows leave gaps only (a few of many shapes)
            window, period, row, q, useful, gaps = np.broadcast_arrays(
                span_s * pixel_bytes, shape.stride * pixel_bytes, np.asarray(shape.w) * pixel_bytes, shape.q,
                row_inputs, gaps)
            row_inputs = np.array(useful, dtype=f)
            fetched = q[gaps] * strided_window_bytes(window[gaps], period[gaps], row[gaps])
            row_inputs[gaps] = np.minimum(fetched, row[gaps])   # never past the row's own bytes
        inputs = (n * rows * row_inputs / in_b + np.asarray(shape.k, dtype=f) * shape.r * shape.s * (
            np.asarray(shape.c, dtype=f) / shape.groups))
        outputs = n * shape.p * shape.q * shape.k
        mn = outputs
    else:
        m, n, k = (np.asarray(x, dtype=f) for x in (shape.m, shape.n, shape.k))
        inputs = shape.batch * (m * k + k * n)
        mn = outputs = shape.batch * m * n
    total = inputs * in_b + outputs * out_b
    return total + mn * (8.0 * split_k) if split_k > 1 else total


def panel_bytes_per_k_tile(cfg: KernelConfig, dtype: str, tile_m=None, tile_n=None) -> tuple[float, float]:
    """Bytes of A and B panels one tile moves per K tile: (read out of L2, taken into its SM).

    The CTAs of a cluster that share a panel get it by TMA multicast from one L2 read: the
    ``cluster_n`` CTAs of a cluster row share their A panel, the ``cluster_m`` of a column their B panel.
    """
    in_b = DTYPE_IN_BYTES[dtype]
    tm = cfg.tile_m if tile_m is None else tile_m    # a problem-sized tile: arrays (one pass each)
    tn = cfg.tile_n if tile_n is None else tile_n
    per_row = cfg.tile_k * in_b
    from_l2 = tm * (per_row / cfg.cluster_n) + tn * (per_row / cfg.cluster_m)
    return from_l2, tm * float(per_row) + tn * per_row


SECTOR_BYTES = 32     # the unit the L2 moves to and from the SMs
LINE_BYTES = 128      # an L1 / L2 cache line: four sectors


def panel_traffic_factors(cfg: KernelConfig, shape: Gemm | Conv2d, dtype: str):
    """How many times their bytes a tile's A and B panels move out of L2: ``(A, B)``, each 1 but where
    noted (arrays broadcast).

    A convolution whose input-channel rows start off 32-byte sectors (``C * in_bytes % 32 != 0``, e.g.
    fp16 ``C % 16 == 8``) has its panels' row pieces touch more sectors than their bytes fill. The L2
    counters follow the sectors each pair of neighbouring threads of a load instruction touches
    (validation/conv_l2_sectors.py: on all 28 shapes of ncu_conv_misses/, stride 2 and small C
    included); ``channel_sector_ratios`` counts them per sector of useful bytes, 1.5 for such rows
    where each pixel's start is on or off a sector by turns. The fitted ``channel_traffic_factor`` is
    the factor at that ratio: the L2's busy time follows requests (7.6-9.7 ns per thousand where reads
    hit), and off-sector rows make 2.05x the requests per row slice of aligned ones, so a panel at ratio
    ``r`` moves ``1 + (channel_traffic_factor - 1) * (r - 1) / 0.5`` times its bytes. A strided conv
    whose taps each land on pixels of one parity moves some taps all on sectors (a 1x1 stride-2 conv:
    every one, ratio 1) and others all off them (ratio 2); small C adds the pieces that a filter row's
    end or the GEMM's last K chunk cuts off (3x3, C = 8: 1.67).
    """
    if cfg.channel_traffic_factor == 1 or not isinstance(shape, Conv2d):
        return 1.0, 1.0
    slope = (cfg.channel_traffic_factor - 1) / (OFF_SECTOR_RATIO - 1)
    return tuple(1 + slope * (ratio - 1) for ratio in channel_sector_ratios(shape, dtype))


OFF_SECTOR_RATIO = 1.5    # sectors per useful sector where a row's start is on and off a sector by turns


def channel_sector_ratios(shape: Conv2d, dtype: str):
    """32-byte sectors per sector of useful bytes that a convolution's A panel (the gathered input) and B
    panel (the KRSC filter) move, as tc_f16_conv loads them: 16-byte chunks along the GEMM's K (r, s, c),
    counted over each pair of neighbouring threads (two chunks, 32 bytes of K). Arrays broadcast.

    Per tap (r, s) of the filter a pixel's ``C`` channels are contiguous, and so are the taps of one
    filter row (neighbouring pixels); a pair is one sector where it starts on a sector and two where it
    starts 16 bytes in, or spans two filter rows; a last pair with one chunk is one sector. Where
    ``C * in_bytes % 32 == 16`` the pairs starting in tap ``t`` start off a sector where the pixel's
    parity plus ``t`` is odd: half the time where the output pixels run over both parities (an odd
    stride), always or never for each tap where an even stride fixes the parity within an image
    (``(r - pad) * W + s - pad``; where ``H * W`` is odd the odd images, ``N // 2`` of ``N``, flip
    it). Filter rows start ``R S C in_bytes`` bytes apart: off a sector every other row where that is 16
    modulo 32. Taps in the padding and rows past the problem are counted as if loaded (they are a small
    share; validation/conv_l2_sectors.py replays them exactly: within 0.034 of this count on every
    committed conv shape). Channels not a multiple of a chunk: 1.5 where they start off sectors, else 1
    (no chunked gather to count).
    """
    i64 = np.int64
    columns = np.broadcast_arrays(*(np.asarray(x, dtype=i64) for x in (
        shape.c, shape.r, shape.s, shape.stride, shape.padding, shape.h, shape.w, shape.n)))
    out_shape = columns[0].shape
    in_b = DTYPE_IN_BYTES[dtype]
    chunk = 16 // in_b                          # elements per 16-byte chunk
    pair = 2 * chunk                            # elements per thread pair: one sector when aligned
    c_all = columns[0].ravel()
    chunked = c_all * in_b % 16 == 0
    alternating = c_all * in_b % SECTOR_BYTES == 16
    # chunks of aligned channels fill whole sectors (ratio 1); rows not of whole chunks are not gathered
    # in chunks: 1.5 where they start off sectors, as one factor
    ratio_a = np.where(~chunked & (c_all * in_b % SECTOR_BYTES != 0), OFF_SECTOR_RATIO, 1.0)
    ratio_b = ratio_a.copy()
    idx = np.flatnonzero(chunked & alternating)
    if idx.size:
        c, r, s, stride, pad, h, w, n = (x.ravel()[idx] for x in columns)
        kg = r * s * c
        even = stride % 2 == 0                      # each tap's pixels of one parity within an image
        odd_images = np.where(h * w % 2 == 1, (n // 2) / n, 0.0)   # share of images that flip it
        sectors = np.zeros(idx.size)
        for ri in range(int(r.max())):
            for si in range(int(s.max())):
                t = ri * s + si
                start, end = t * c, (t + 1) * c
                pairs = -(-end // pair) - -(-start // pair)       # pairs whose first chunk is in tap t
                leaves = end % pair != 0                          # its last pair runs into the next tap
                last = t == r * s - 1
                half = leaves & last                              # ... past K: one chunk, one sector
                cross = leaves & (si == s - 1) & ~last            # ... into the next filter row: two
                parity = ((ri - pad) * w + si - pad + t) % 2
                off = np.where(even, parity + odd_images - 2 * parity * odd_images, 0.5)
                tap = (pairs - half - cross) * (1.0 + off) + 2.0 * cross + half
                sectors = sectors + np.where((ri < r) & (si < s), tap, 0.0)
        useful = kg / pair
        ratio_a[idx] = sectors / useful
        filter_pairs = (kg // pair) * np.where(kg * in_b % SECTOR_BYTES == 16, OFF_SECTOR_RATIO, 1.0)
        ratio_b[idx] = (filter_pairs + (kg % pair != 0)) / useful
    if not out_shape:
        return float(ratio_a[0]), float(ratio_b[0])
    return ratio_a.reshape(out_shape), ratio_b.reshape(out_shape)


def channel_dram_slowdown(cfg: KernelConfig, shape: Gemm | Conv2d, dtype: str):
    """How many times longer a convolution's DRAM stream takes than its bytes at the kernel's rate (1 but
    where noted; arrays broadcast).

    Where its input-channel rows start off 32-byte sectors (``channels_off_sectors``) a kernel that
    gathers them 16 bytes at a time (tc_f16_conv) sends the L2 twice the requests for the same bytes,
    and the DRAM stream slows although it moves no more bytes: ``channel_dram_factor`` times its time.
    Nsight Compute on conv_f16_128x64 on the H100 (validation/data/h100-sxm/ncu_conv_off_sector/):
    C = 200 beside C = 192 and 208 (1x1, 64 x 56 x 56, K = 32) reads the same DRAM bytes with 2.1x
    the L2 requests, at 57 % of the DRAM peak against 72 and 67 %; C = 72 beside 64 and 80, 36 %
    against 65 and 66 %. The factor is fitted per kernel (2-fold CV on the calibration rows lowers the
    held-out folds' count past 8 % from 194 and 187 rows to 177 and 166).
    """
    return _where_channels_off_sectors(cfg.channel_dram_factor, shape, dtype)


def _where_channels_off_sectors(factor: float, shape: Gemm | Conv2d, dtype: str):
    """``factor`` where a convolution's channel rows start off 32-byte sectors, else 1 (a GEMM: 1)."""
    if factor == 1 or not isinstance(shape, Conv2d):
        return 1.0
    return np.where(channels_off_sectors(shape, dtype), factor, 1.0)


def channels_off_sectors(shape: Conv2d, dtype: str):
    """True where a convolution's input-channel rows start off 32-byte sectors (``C * in_bytes % 32``)."""
    return np.asarray(shape.c) * DTYPE_IN_BYTES[dtype] % SECTOR_BYTES != 0


def valid_tap_fraction(shape: Gemm | Conv2d):
    """Share of a convolution's (output pixel, filter tap) pairs that fall inside the input (1 for a GEMM;
    arrays broadcast): the rows of its implicit GEMM's A panel that exist in memory, the rest being the
    padding. Along one dimension, tap ``t`` of output ``o`` reads input ``o * stride - padding + t *
    dilation``; the share is the product of the two dimensions' shares (a 3x3 pad-1 filter over a 7x7
    image: (19 / 21)**2 = 0.82; over 112x112: 0.98).
    """
    if not isinstance(shape, Conv2d):
        return 1.0

    def along(size, out, taps):
        size, out, taps = (np.asarray(x, dtype=np.float64) for x in (size, out, taps))
        stride, pad, dil = (np.asarray(x, dtype=np.float64)
                            for x in (shape.stride, shape.padding, shape.dilation))
        valid = np.zeros(np.broadcast(size, out, taps, stride, pad, dil).shape)
        for t in range(int(np.max(taps))):      # a filter's few taps; its outputs counted in closed form
            first = np.maximum(0.0, np.ceil((pad - t * dil) / stride))
            last = np.minimum(out - 1, np.floor((size - 1 + pad - t * dil) / stride))
            valid = valid + np.where(t < taps, np.maximum(0.0, last - first + 1), 0.0)
        return valid / (out * taps)

    share = along(shape.h, shape.p, shape.r) * along(shape.w, shape.q, shape.s)
    return share if np.ndim(share) else float(share)


# the share of the L2 from which one tap pass starts to miss, and the share where all of it misses:
# Nsight Compute's DRAM reads on the H100 (ncu_conv_random/, ncu_conv_misses/) put the input's extra
# reads at 2 % of the taps' reuse at 0.55 of the L2, 28 % at 0.82 and 94 % at 0.95 (stride 2)
TAP_REUSE_L2_SHARES = (0.75, 1.0)


def tap_pass_bytes_per_row(shape: Conv2d):
    """L2 bytes one tap pass holds per output pixel in flight: ``C x in_bytes x stride`` (a strided
    conv's next tap with the same pixels comes ``stride`` passes later)."""
    return np.asarray(shape.c, dtype=np.float64) / shape.groups * DTYPE_IN_BYTES[shape.dtype] * shape.stride


def tap_reread_bytes(shape: Gemm | Conv2d, concurrent_rows, l2_bytes: float):
    """DRAM bytes a convolution's taps read again where the L2 cannot keep its input between taps.

    An implicit-GEMM conv whose K loop walks tap by tap ((r, s) outer, channels inner, as tc_f16_conv)
    reads, in one tap pass, ``C`` channels of one input pixel per output pixel in flight
    (``concurrent_rows``: the running CTAs' distinct A rows). The next tap reads the neighbouring pixels
    (``stride`` passes later for a strided conv), so the reuse hits only while a pass,
    ``concurrent_rows x tap_pass_bytes_per_row``, fits in the L2; past it each input element comes back
    from DRAM about once per tap that covers it, ``(R / stride) x (S / stride)`` times, instead of once.
    The misses ramp linearly between the two shares of ``l2_bytes`` in ``TAP_REUSE_L2_SHARES``
    (measured with Nsight Compute). On the H100 SXM, conv_f16_128x64 (396 CTAs at once) ran 3x3 convs
    of wide C over 112x112 images up to 1.5x slower than the model without this term predicted, where
    conv_f16_128x128 (264 CTAs) ran the same shapes as predicted (conv_own_extra.md). 0 for a GEMM and
    for 1x1 convs.
    """
    if not isinstance(shape, Conv2d):
        return 0.0
    f = np.float64
    per_pass = concurrent_rows * tap_pass_bytes_per_row(shape)
    lo, hi = (share * l2_bytes for share in TAP_REUSE_L2_SHARES)
    miss = np.clip((per_pass - lo) / (hi - lo), 0.0, 1.0)
    stride = np.asarray(shape.stride, dtype=f)
    taps = np.maximum(shape.r / stride, 1.0) * np.maximum(shape.s / stride, 1.0)
    inputs = np.asarray(shape.n, dtype=f) * shape.h * shape.w * np.asarray(shape.c, dtype=f) * (
        DTYPE_IN_BYTES[shape.dtype])
    return inputs * (taps - 1.0) * miss


def valid_panel_rows(cfg: KernelConfig, g: Gemm, tiles_m, tiles_n, tile_m=None):
    """Rows of a tile's A and B panels that move bytes, on average over the call's tiles (arrays broadcast).

    A kernel that zero-fills the rows of its edge tiles beyond the problem (``edge_loads_free``:
    tc_f16_conv passes cp.async a source size of 0 for A rows past ``M`` and filter rows past ``N``)
    loads ``M / tiles_m`` rows of A and ``N / tiles_n`` rows of B per tile on average, not ``tile_m``
    and ``tile_n`` (K = 24 output channels: a 24-row filter panel in a 128-wide tile). Otherwise the
    full tile's rows (``tile_m``, or the problem-sized ``tile_m`` given, and ``tile_n``).
    """
    tm = cfg.tile_m if tile_m is None else tile_m
    if not cfg.edge_loads_free:
        return tm, cfg.tile_n
    f = np.float64
    rows_m = np.asarray(g.m, dtype=f) / tiles_m
    rows_n = np.asarray(g.n, dtype=f) / tiles_n
    return np.minimum(rows_m, tm), np.minimum(rows_n, cfg.tile_n)


def p_norm_s(a_s, b_s, p: float):
    """``(a**p + b**p)**(1/p)`` of two non-negative times (arrays broadcast), written as ``longer * (1 +
    (shorter / longer)**p)**(1/p)``: ``2**(1/p)`` times either where they are equal, the longer where the
    other vanishes (0 where both do)."""
    longer = np.maximum(a_s, b_s)
    ratio = np.divide(np.minimum(a_s, b_s), longer, out=np.zeros(np.shape(longer)), where=longer > 0)
    return longer * (1.0 + ratio ** p) ** (1.0 / p)


def streams_s(dram_s, l2_s, ingest_s, dram_l2_norm: float = 0.0):
    """The memory time of a call whose DRAM, L2 and per-SM (ingest) streams take ``dram_s``, ``l2_s``
    and ``ingest_s`` (arrays broadcast): the longest of the three, or where ``dram_l2_norm`` is set, the
    longer of the ingest and the ``dram_l2_norm``-norm of DRAM and L2.

    Every byte of the DRAM stream passes an L2 slice (reads are filled into it, writes drain from it),
    so where the two streams are of a size their requests queue behind each other at the slices, and
    neither runs at its own rate: at p = 2 two equal streams take 1.41 times either, and a stream a
    third of the other adds 5 %. An SM's ingest is its own port, shared with no other SM's, and stays
    a bound of its own.
    """
    if not dram_l2_norm:
        return np.maximum(dram_s, np.maximum(l2_s, ingest_s))
    return np.maximum(p_norm_s(dram_s, l2_s, dram_l2_norm), ingest_s)


def overlapped_s(compute_s, memory_s, unhidden_fraction: float, smooth: bool = False):
    """Busy time of a kernel whose math takes ``compute_s`` and memory streams ``memory_s`` (arrays
    broadcast).

    Without ``unhidden_fraction``: the longer of the two (the pipeline hides the shorter). With it, the
    longer plus that share of the shorter; or, ``smooth``, the p-norm ``(c**p + m**p)**(1/p)`` with
    ``p = ln 2 / ln(1 + unhidden_fraction)``: ``(1 + unhidden_fraction)`` times either where the two
    are equal, tending to the longer as it dominates (the shorter stream's stalls, requests queued
    behind the other's, fade as it shrinks).
    """
    longer = np.maximum(compute_s, memory_s)
    if not unhidden_fraction:
        return longer
    shorter = np.minimum(compute_s, memory_s)
    if not smooth:
        return longer + unhidden_fraction * shorter
    return p_norm_s(compute_s, memory_s, math.log(2.0) / math.log1p(unhidden_fraction))


class _Shared:
    """Per-call quantities every configuration reuses: float views of the dimensions (integers are
    exact in float64 far beyond any GEMM dimension, and numpy divides floats much faster than ints)
    and memoised tile counts, K iterations and DRAM bytes."""

    def __init__(self, g: Gemm, shape: Gemm | Conv2d):
        f = np.float64
        self.g, self.shape = g, shape
        self.m, self.n, self.k, self.batch = (np.asarray(x, dtype=f) for x in (g.m, g.n, g.k, g.batch))
        self._memo: dict = {}

    def memo(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def tiles(self, dim: str, tile: int, cluster: int):
        x = getattr(self, dim)
        return self.memo((dim, tile, cluster), lambda: np.ceil(np.ceil(x / tile) / cluster) * cluster)

    def wave_fitted_tile_m(self, cfg: KernelConfig, size: int):
        """A problem-sized ``tile_m``: the smallest multiple of ``cfg.tile_m_granule`` (at most
        ``tile_m``) whose tiles fit in as many waves of ``size`` CTAs as ``tile_m``'s need; and its
        tile count along M (float arrays)."""
        def make():     # in place on one buffer: each pass over a million shapes costs
            per_m = self.tiles("n", cfg.tile_n, cfg.cluster_n)       # CTAs per tile along M
            if self.batch.ndim or self.batch != 1 or cfg.split_k != 1:
                per_m = per_m * (self.batch * cfg.split_k)
            cm, gran = cfg.cluster_m, cfg.tile_m_granule
            tiles = self.tiles("m", cfg.tile_m, cm)
            x = np.multiply(tiles, per_m, out=np.empty(np.broadcast(tiles, per_m).shape))  # its CTAs
            np.ceil(np.divide(x, size, out=x), out=x)                # its waves, w
            np.floor(np.divide(np.multiply(x, size, out=x), per_m, out=x), out=x)   # tiles along M they hold
            if cm > 1:
                np.multiply(np.floor(np.divide(x, cm, out=x), out=x), cm, out=x)
            tm = np.ceil(np.divide(self.m, x, out=x), out=x)         # rows per tile, to the granule
            if gran > 1:
                np.multiply(np.ceil(np.divide(tm, gran, out=tm), out=tm), gran, out=tm)
            if cfg.tile_m % gran:         # at most ceil(m / tiles of tile_m) <= tile_m rows before rounding
                np.minimum(tm, cfg.tile_m, out=tm)
            tiles_m = np.divide(self.m, tm, out=np.empty(tm.shape))
            np.ceil(tiles_m, out=tiles_m)
            if cm > 1:
                np.multiply(np.ceil(np.divide(tiles_m, cm, out=tiles_m), out=tiles_m), cm, out=tiles_m)
            return tm, tiles_m
        key = ("wavefit", cfg.tile_m, cfg.tile_n, cfg.cluster_m, cfg.cluster_n, cfg.split_k,
               cfg.tile_m_granule, size)
        return self.memo(key, make)

    def k_iters(self, split: int, tile_k: int):
        return self.memo(("k", split, tile_k), lambda: np.ceil(np.ceil(self.k / split) / tile_k))

    def dram_bytes(self, split: int):
        return self.memo(("dram", split), lambda: dram_bytes(self.shape, split))

    def outputs(self):
        return self.memo("mn", lambda: self.batch * self.m * self.n)

    def dram_s(self, cfg: KernelConfig, gpu: GPUSpec):
        """DRAM time at ``cfg``'s read (and write) efficiency; shared by a family's configurations."""
        def make():
            bw = gpu.dram_bandwidth_bytes_per_s
            t = self.dram_bytes(cfg.split_k) / (bw * cfg.bandwidth_efficiency)
            if cfg.write_bandwidth_efficiency:   # C's writes drain at their own rate, beside the reads
                written = self.outputs() * DTYPE_OUT_BYTES[self.g.dtype]
                slower = 1.0 / cfg.write_bandwidth_efficiency - 1.0 / cfg.bandwidth_efficiency
                t = t + written * (slower / bw)
            return t
        key = ("dram_s", cfg.split_k, cfg.bandwidth_efficiency, cfg.write_bandwidth_efficiency)
        return self.memo(key, make)

    def reduce_s(self, cfg: KernelConfig, gpu: GPUSpec):
        """A split-K reduction's DRAM time: it reads the fp32 partials and writes C."""
        return self.memo(("reduce", cfg.split_k, cfg.bandwidth_efficiency), lambda: self.outputs() * (
            (4.0 * cfg.split_k + DTYPE_OUT_BYTES[self.g.dtype]) / (
                gpu.dram_bandwidth_bytes_per_s * cfg.bandwidth_efficiency)))


EULER_GAMMA = 0.5772156649015329


def expected_max_of(n):
    """The mean of the largest of ``n`` independent exponential delays of mean 1: the harmonic number
    ``H(n) = 1 + 1/2 + ... + 1/n`` (arrays broadcast; ``ln n + gamma + 1/(2n) - 1/(12n**2)``, within
    0.007 of it at n = 1 and closer beyond)."""
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) + EULER_GAMMA + 0.5 / n - 1.0 / (12.0 * n * n)


def straggler_wait_s(tail_tiles, cfg: KernelConfig, gpu: GPUSpec):
    """The expected delay of a call's slowest SM: ``straggler_s * H(s)`` for the ``s = min(tail_tiles,
    sm_count)`` SMs of the last wave (0 where ``straggler_s`` is unset; arrays broadcast).

    Each SM's last tiles finish after a random delay (memory requests queued behind the other SMs'
    at the L2 slices and DRAM channels; the kernel's completion collecting every SM), of mean
    ``straggler_s``; a call lasts until the slowest of its SMs is done, and the largest of ``s``
    exponential delays has mean ``H(s)`` times theirs, growing as ``ln s``. Our block timelines on the
    H100 show the slowest CTA pulling away from the median as the CTAs of one wave multiply
    (conv_f16_128x64, one CTA per SM: 1.58 / 1.54 us with 2 CTAs, 2.58 / 1.89 us with 128), and the
    launch probe shows the kernel boundary itself growing with the SMs used and the bytes stored
    (validation/data/h100-sxm/launch_probe/).
    """
    if not cfg.straggler_s:
        return 0.0
    sms = np.minimum(np.maximum(tail_tiles, 1.0), gpu.sm_count)
    return cfg.straggler_s * expected_max_of(sms)


def scheduler_slots(blocks, cfg: KernelConfig, gpu: GPUSpec):
    """The math time of ``blocks`` resident blocks on one SM, in units of ``1 / bps`` of a full SM's.

    An SM issues from ``warp_schedulers_per_sm`` sub-partitions, each with its own FMA / tensor units,
    and deals a block's warps to them in turn, so ``j`` blocks of ``w`` warps leave the busiest
    scheduler ``ceil(j * w / schedulers)`` warps, against ``ceil(bps * w / schedulers)`` for a full
    SM: ``bps * ceil(j * w / schedulers) / ceil(bps * w / schedulers)`` slots. Blocks of a multiple of
    the schedulers' warps spread evenly (``j`` slots); simt_f32_64x64's two-warp blocks do not (8 a
    full SM: 3 blocks take as long as 4, 5 as 6, 7 as 8).
    """
    occ = cfg.occupancy(gpu)
    warps, parts, bps = occ.warps_per_block, gpu.warp_schedulers_per_sm, occ.blocks_per_sm
    if warps % parts == 0:
        return blocks
    return np.ceil(blocks * (warps / parts)) * (bps / math.ceil(bps * warps / parts))


def scalar_load_s(sh: _Shared, cfg: KernelConfig, tiles_m, tiles_n, dtype: str):
    """Extra main-loop time of one K tile where an operand's rows are not 16-byte aligned (0 elsewhere).

    A kernel that loads its A panel (rows of K elements) and B panel (rows of N) as 16-byte vectors
    where it can falls back to bounds-checked element-wise loads where ``K`` (A) or ``N`` (B) is not a
    multiple of ``16 / in_bytes``: four load instructions and their checks for each vector, issued by
    the same schedulers as the math, and none for the rows (A) or columns (B) beyond the problem. The
    misaligned panel's valid bytes of each K tile (a tile's mean: ``M / tiles_m`` rows of A, ``N /
    tiles_n`` columns of B) cost ``1 / scalar_load_bytes_per_s`` each (one SM's element-wise load
    rate, fitted).
    """
    in_b = DTYPE_IN_BYTES[dtype]
    vector = 16 // in_b
    rows = np.where(sh.k % vector != 0, 1.0, 0.0) * (sh.m / tiles_m) + np.where(
        sh.n % vector != 0, 1.0, 0.0) * (sh.n / tiles_n)
    return rows * (cfg.tile_k * in_b / cfg.scalar_load_bytes_per_s)


def line_aligned_rows(k, dtype: str):
    """True where every row of a row-major A (K elements) starts at the same offset of its 128-byte
    line: ``K * in_bytes`` a multiple of 128.

    A warp of our SIMT kernels loads 16 rows of its A panel at once, 32 bytes (8 fp32) of each; with
    such a row stride all 16 pieces sit at one sector position of their lines. Nsight Compute on the
    H100 (validation/data/h100-sxm/ncu_line_aligned/): simt_f32_128x64 at M 3712, N 1856 runs 13-18 %
    longer at K 1152, 1184, 1248 and 1920 than at K 1160, 1168, 1176 or 1200, with short-scoreboard
    stalls (the shared-memory loads of the main loop, served by the same L1 pipeline) up from 10-13 %
    to 16-19 %; at K % 32 == 8, 16 or 24 and K % 8 == 4 it runs at the same speed.
    """
    return np.asarray(k) * DTYPE_IN_BYTES[dtype] % LINE_BYTES == 0


def written_bytes_per_output(cfg: KernelConfig, dtype: str) -> float:
    """Bytes the main kernel writes per output: C's, or fp32 partials ``split_k`` times over (split-K)."""
    return 4.0 * cfg.split_k if cfg.split_k > 1 else float(DTYPE_OUT_BYTES[dtype])


def written_bytes(sh: _Shared, cfg: KernelConfig):
    """Bytes the main kernel writes (``written_bytes_per_output`` for each output)."""
    return sh.outputs() * written_bytes_per_output(cfg, sh.g.dtype)


def epilogue_bytes(sh: _Shared, cfg: KernelConfig, busiest, tiles, tile_m, tile_n):
    """Bytes of C the busiest SM's tiles store in their epilogues (``busiest`` tiles; arrays broadcast).

    A tile stores its valid outputs: on average the call's outputs over its tiles (edge tiles store
    only their valid part). Where ``cfg.last_tile_full`` is set, the last of them is an interior tile
    storing a full ``min(M, tile_m) x min(N, tile_n)``: the call ends with its slowest tile, and an
    edge tile's shorter epilogue ends before it (our GEMMs' half2 / float4 epilogues: a one-wave call
    of a 128-row tile of 48 columns stores as long as its 48-column interior tiles, not its mean).
    Where rows of C are not 16-byte aligned every byte counts ``scalar_store_factor`` times
    (element-wise stores).
    """
    out_b = DTYPE_OUT_BYTES[sh.g.dtype]
    valid = sh.outputs() / tiles * out_b
    stored = busiest * valid
    if cfg.last_tile_full:
        stored = stored + (np.minimum(sh.m, tile_m) * np.minimum(sh.n, tile_n) * out_b - valid)
    if cfg.scalar_store_factor != 1:    # rows of C not 16-byte aligned: element-wise stores
        stored = stored * np.where(sh.n % (16 // out_b) == 0, 1.0, cfg.scalar_store_factor)
    return stored


def write_rate_bytes_per_s(cfg: KernelConfig, gpu: GPUSpec) -> float:
    """The DRAM rate of C's writes: ``write_bandwidth_efficiency`` (else ``bandwidth_efficiency``) of
    the DRAM bandwidth."""
    return gpu.dram_bandwidth_bytes_per_s * (cfg.write_bandwidth_efficiency or cfg.bandwidth_efficiency)


def rows_off_sectors(n, dtype: str):
    """True where rows of C (``n`` outputs each) start off 32-byte sectors: ``n * out_bytes % 32 != 0``
    (fp16 ``n % 16 == 8``: every other row starts mid-sector)."""
    return np.asarray(n) * DTYPE_OUT_BYTES[dtype] % SECTOR_BYTES != 0


def off_sector_write_s(sh: _Shared, cfg: KernelConfig, gpu: GPUSpec):
    """Extra DRAM-stream time of C's writes where its rows start off 32-byte sectors (0 elsewhere).

    Every other such row's piece in a tile begins and ends in a sector that the neighbouring tile, on
    another CTA, completes at another time: C's bytes then cost ``off_sector_write_factor`` times
    their time at the write rate (fitted). Nsight Compute on the H100 (cuBLAS, fp16, K = 16,
    validation/data/h100-sxm/ncu_off_sector/): the same kernel writes the same DRAM bytes 47-58 %
    slower at N = 8200, 8216 or 14936 than at N = 8192, 8208 or 14944, with 16 % more L2 write
    sectors. Split-K configurations write fp32 partials here (on sectors for 8-aligned N).
    """
    return _extra_c_write_s(sh, cfg, gpu, rows_off_sectors(sh.n, sh.g.dtype), cfg.off_sector_write_factor)


def _extra_c_write_s(sh: _Shared, cfg: KernelConfig, gpu: GPUSpec, where, factor: float):
    """C's bytes at ``factor - 1`` times their write time ``where`` set (0 elsewhere)."""
    return np.where(where, sh.outputs() * (DTYPE_OUT_BYTES[sh.g.dtype] * (factor - 1)
                                           / write_rate_bytes_per_s(cfg, gpu)), 0.0)


def rows_off_lines(n, dtype: str):
    """True where rows of C (``n`` outputs each) start off 128-byte lines: ``n * out_bytes % 128 != 0``
    (fp16 ``n % 64 != 0``)."""
    return np.asarray(n) * DTYPE_OUT_BYTES[dtype] % LINE_BYTES != 0


def partial_line_write_s(sh: _Shared, cfg: KernelConfig, gpu: GPUSpec):
    """Extra DRAM-stream time of C's writes where its rows start off 128-byte lines (0 elsewhere).

    A tile's piece of such a row begins and ends inside lines that the neighbouring tiles, on other
    CTAs, write the rest of: C's bytes then cost ``partial_line_write_factor`` times their time at the
    write rate (fitted; our convs). Nsight Compute on the H100 (conv_f16_128x64, 2 x 112 x 112 x 8, 3x3,
    validation/data/h100-sxm/ncu_conv_small_c_wide/): at K = 1664 (rows of 3328 bytes, 26 lines) the
    call sends 13-14 % fewer write requests to the L2 than at K = 1648 or 1656 and runs 3 % faster;
    conv_f16_128x128, whose tiles' rows are twice as wide, sends the same requests at all three and runs
    alike (and its fitted factor is about 1).
    """
    return _extra_c_write_s(sh, cfg, gpu, rows_off_lines(sh.n, sh.g.dtype), cfg.partial_line_write_factor)


def c_write_s(sh: _Shared, cfg: KernelConfig, gpu: GPUSpec):
    """DRAM time of the call's C writes: its outputs at ``write_bandwidth_efficiency`` (else
    ``bandwidth_efficiency``) of the DRAM bandwidth, the part of ``dram_s`` that C's writes take.

    Where ``cfg.epilogue_drains_c`` is set the writes are not hidden under the main loop: a tile
    issues its stores only after its last K tile, the tiles of a wave reach their epilogues together,
    so the busiest SM's epilogues last at least as long as C takes to drain to DRAM (our tensor-core
    GEMMs: an output-heavy 7536 x 3272 x 344 call takes the math plus the writes, 94 us, not the
    longer of the two).
    """
    return sh.outputs() * DTYPE_OUT_BYTES[sh.g.dtype] / write_rate_bytes_per_s(cfg, gpu)


def scalar_write_s(sh: _Shared, cfg: KernelConfig):
    """Memory-system time of C's element-wise writes where its rows are not 16-byte aligned (0 elsewhere).

    A kernel that stores C as 16-byte vectors where N allows falls back to one store per element
    elsewhere: four partial-sector writes for each vector's bytes, which the L2 slices and DRAM serve
    for all SMs together at ``scalar_write_bytes_per_s`` (fitted), in the DRAM stream's time beside
    the operand reads (our SIMT kernels: a one-wave 1332 x 527 x 21 call with a tile on 99 SMs takes
    10 us where 12 such tiles take 6).
    """
    out_b = DTYPE_OUT_BYTES[sh.g.dtype]
    misaligned = np.where(sh.n % (16 // out_b) == 0, 0.0, 1.0)
    return misaligned * sh.outputs() * (out_b / cfg.scalar_write_bytes_per_s)


def config_latency(g: Gemm, cfg: KernelConfig, gpu: GPUSpec, profile: calibration.Profile,
                   shape: Gemm | Conv2d | None = None, shared: _Shared | None = None) -> dict:
    """Model terms (arrays broadcast over ``g``'s dimensions) for one configuration.

    ``g`` is the GEMM the kernel runs (a convolution's implicit GEMM); ``shape`` the problem as the
    user gave it, for its DRAM footprint (defaults to ``g``). ``shared`` carries quantities reused
    across the configurations of one call.
    """
    sh = shared or _Shared(g, shape if shape is not None else g)
    if cfg.tile_m_granule:      # a problem-sized tile_m that fills its waves
        tm, tiles_m = sh.wave_fitted_tile_m(cfg, wave_size(cfg, gpu))
    else:
        tm, tiles_m = cfg.tile_m, sh.tiles("m", cfg.tile_m, cfg.cluster_m)
    tn = cfg.tile_n
    tiles_n = sh.tiles("n", cfg.tile_n, cfg.cluster_n)
    ws = waves_of(g.m, g.n, sh.batch, tiles_m, tiles_n, cfg, gpu)
    bps, tiles, waves = ws.blocks_per_sm, ws.tiles, ws.waves
    full_waves = waves - 1
    tail_bps = np.ceil(ws.tail_tiles / gpu.sm_count)
    sm_rate = gpu.peak_flops(g.dtype, cfg.math) / gpu.sm_count
    k_iters = sh.k_iters(cfg.split_k, cfg.tile_k)
    t_iter = tm * (2.0 * tn * cfg.tile_k / (sm_rate * cfg.efficiency))   # one K tile
    if cfg.line_aligned_rows_factor != 1:   # A's rows all at one offset of their lines: loads queue
        t_iter = t_iter * np.where(line_aligned_rows(sh.k, g.dtype), cfg.line_aligned_rows_factor, 1.0)
    if cfg.scalar_load_bytes_per_s:     # operand rows off 16 bytes: the panel loaded element-wise
        t_iter = t_iter + scalar_load_s(sh, cfg, tiles_m, tiles_n, g.dtype)
    alone = bps / min(cfg.single_block_speedup, bps)        # a lone block's time, in t_tile units
    busiest = full_waves * bps + tail_bps                   # tiles on the busiest SM
    tail_math = scheduler_slots(tail_bps, cfg, gpu)         # its busiest warp scheduler's share
    tail_slots = tail_math if alone <= 1 else np.maximum(tail_math, alone)
    if cfg.tail_block_speedup:  # after a full wave the last wave's blocks share SMs with its stragglers
        after_full = np.maximum(tail_math, bps / min(cfg.tail_block_speedup, bps))
        tail_slots = np.where(full_waves > 0, after_full, tail_slots)
    if cfg.k_iter_latency_s:    # no wave's main loop is shorter than k_iters round trips of one CTA
        lat = cfg.k_iter_latency_s
        per_wave = np.maximum(bps * t_iter if bps != 1 else t_iter, lat)   # t_iter: an array where
        #                                                                         the tile is problem-sized
        compute = k_iters * (full_waves * per_wave + np.maximum(tail_slots * t_iter, lat))
    else:                       # t_tile = k_iters * t_iter per slot of the busiest SM
        compute = k_iters * (t_iter * (full_waves * bps + tail_slots))
    if cfg.tile_overhead_s:                                 # each tile pays its prologue and epilogue
        compute = compute + busiest * cfg.tile_overhead_s
    epilogue = 0.0
    if cfg.store_bytes_per_s:   # each of its tiles stores its valid part of C after its main loop
        epilogue = epilogue_bytes(sh, cfg, busiest, tiles, tm, tn) / cfg.store_bytes_per_s
    dram = sh.dram_s(cfg, gpu)
    slower = channel_dram_slowdown(cfg, sh.shape, g.dtype)   # off-sector channel rows: a slower stream
    if np.ndim(slower) or slower != 1:
        dram = dram * slower
    reread = 0.0
    if cfg.taps_reread_past_l2:     # the input again from DRAM where a tap pass outgrows the L2
        concurrent = np.minimum(tiles_m, np.ceil(np.minimum(tiles, ws.wave_size) / tiles_n)) * tm
        reread = tap_reread_bytes(sh.shape, np.minimum(concurrent, g.m), gpu.l2_bytes) * slower / (
            gpu.dram_bandwidth_bytes_per_s * cfg.bandwidth_efficiency)
        dram = dram + reread
    written = 0.0
    if cfg.epilogue_drains_c:   # C's writes leave in the epilogues, not under the main loops
        written = c_write_s(sh, cfg, gpu)
        epilogue = np.maximum(epilogue, written)
        dram = dram - written                               # the DRAM stream keeps the reads
    compute = compute + epilogue
    scalar_write = scalar_write_s(sh, cfg) if cfg.scalar_write_bytes_per_s else 0.0
    if cfg.off_sector_write_factor != 1:   # C's rows off 32-byte sectors: partial-sector writes
        scalar_write = scalar_write + off_sector_write_s(sh, cfg, gpu)
    if cfg.partial_line_write_factor != 1:   # C's rows off 128-byte lines: tiles share their end lines
        scalar_write = scalar_write + partial_line_write_s(sh, cfg, gpu)
    factor_a, factor_b = panel_traffic_factors(cfg, sh.shape, g.dtype)
    l2_bw, sm_bw = profile.l2_bandwidth(gpu, cfg), profile.sm_bandwidth(gpu, cfg)
    loaded_m, loaded_n = valid_panel_rows(cfg, g, tiles_m, tiles_n, tm)   # rows of A and B that move
    if cfg.padding_loads_free:  # a conv's taps in the padding are zero-filled: those rows move no bytes
        loaded_m = loaded_m * sh.memo("taps", lambda: valid_tap_fraction(sh.shape))
    plain = np.ndim(factor_a) == 0 and np.ndim(factor_b) == 0
    if cfg.tile_m_granule and plain:   # affine in the problem-sized tm: two passes each
        row_l2, row_sm = panel_bytes_per_k_tile(cfg, g.dtype, 1, 0)
        rest_l2, rest_sm = panel_bytes_per_k_tile(cfg, g.dtype, 0, loaded_n)
        per_l2 = loaded_m * (row_l2 * factor_a / l2_bw) + rest_l2 * factor_b / l2_bw   # seconds per K tile
        per_sm = loaded_m * (row_sm * factor_a / sm_bw) + rest_sm * factor_b / sm_bw
    elif plain and factor_a == 1 and factor_b == 1:
        from_l2, into_sm = panel_bytes_per_k_tile(cfg, g.dtype, loaded_m, loaded_n)
        per_l2, per_sm = from_l2 / l2_bw, into_sm / sm_bw
    else:                       # each panel its own traffic factor (a conv's input and filter rows)
        a_l2, a_sm = panel_bytes_per_k_tile(cfg, g.dtype, loaded_m, 0)
        b_l2, b_sm = panel_bytes_per_k_tile(cfg, g.dtype, 0, loaded_n)
        per_l2 = (a_l2 * factor_a + b_l2 * factor_b) / l2_bw
        per_sm = (a_sm * factor_a + b_sm * factor_b) / sm_bw
    l2 = tiles * k_iters * per_l2
    if cfg.l2_counts_writes:    # C's writes pass through the L2 with the panel reads (module docstring)
        l2 = l2 + written_bytes(sh, cfg) / l2_bw
    ingest = busiest * k_iters * per_sm
    memory = streams_s(dram + scalar_write, l2, ingest, cfg.dram_l2_norm)

    # extra kernels: a split-K reduction; a persistent kernel with more tiles than CTAs first zeroes
    # its tile counter with a memset (670 of the 671 memsets in the H100 cuBLAS data)
    memset = (waves > 1) * profile.launch_overhead_s if cfg.persistent else 0.0
    fixed = cfg.kernel_fixed_s + (cfg.extra_kernels + (cfg.split_k > 1)) * profile.launch_overhead_s + memset
    if cfg.split_k > 1:   # the reduction kernel reads the fp32 partials and writes C
        fixed = fixed + sh.reduce_s(cfg, gpu)
    # each CTA of the first wave adds its start-up under contention (module docstring)
    dispatch = np.minimum(tiles, ws.wave_size) * cfg.cta_dispatch_s if cfg.cta_dispatch_s else 0.0
    straggle = straggler_wait_s(ws.tail_tiles, cfg, gpu)   # the last wave's slowest SM (module docstring)
    fixed = fixed + dispatch + straggle
    # the pipeline hides only part of the shorter stream under the longer (module docstring)
    busy = overlapped_s(compute, memory, cfg.unhidden_fraction, cfg.smooth_overlap)
    return dict(latency_s=fixed + busy, compute_s=compute, memory_s=memory,
                dram_s=dram, reread_s=reread, l2_s=l2, ingest_s=ingest, fixed_s=fixed, memset_s=memset,
                dispatch_s=dispatch, straggler_s=straggle, epilogue_s=epilogue, c_write_s=written,
                scalar_write_s=scalar_write,
                tile_m=tm, stats=ws)


def bound_of(compute_s, memory_s, fixed_s) -> np.ndarray | str:
    """"latency" where fixed costs exceed the kernel's own time, else the larger of compute and memory."""
    code = np.where(memory_s > compute_s, 1, 0)
    code = np.where(fixed_s >= np.maximum(compute_s, memory_s), 2, code)
    out = np.asarray(BOUNDS)[code]
    return str(out) if out.ndim == 0 else out


def _resolve(shape, backend) -> tuple[Gemm | Conv2d, Gemm, str | KernelConfig]:
    shape = as_shape(shape)
    if backend is None:
        backend = "cudnn" if isinstance(shape, Conv2d) else "cublas"
    g = shape.gemm() if isinstance(shape, Conv2d) else shape
    return shape, g, backend


def candidate_configs(backend, gpu: GPUSpec, dtype: str) -> tuple[KernelConfig, ...]:
    """The configurations ``backend`` may run: a library's catalogue, one of ours, or the given one."""
    if isinstance(backend, KernelConfig):
        return (backend,)
    if not isinstance(backend, str):
        raise ValueError(f"backend: expected a name or wm.KernelConfig, got {type(backend).__name__}")
    if backend in LIBRARY_BACKENDS:
        return library_configs(backend, gpu, dtype)
    own = own_kernels()
    if backend in own:
        cfg = own[backend]
        if dtype not in cfg.dtypes:
            raise ValueError(f"dtype: kernel {backend!r} runs {', '.join(cfg.dtypes)}, not {dtype}")
        return (cfg,)
    raise ValueError(
        f"backend: unknown backend {backend!r}; allowed values: {', '.join(LIBRARY_BACKENDS)}, "
        f"a wm.KernelConfig, or one of our kernels: {', '.join(sorted(own)) or '(none built)'}"
    )


def predict_latency(shape, gpu_spec: GPUSpec | str = "h100-sxm", backend=None, *,
                    profile: calibration.Profile | None = None, sustained: bool = False) -> Prediction:
    """Predict the device time of one call (every kernel it launches, back to back as in a CUDA graph).

    ``shape`` is a ``wm.Gemm``, a ``wm.Conv2d`` or an ``(m, n, k)`` tuple (an fp16 GEMM); array
    dimensions broadcast and every field of the result is then an array of that shape. ``profile``
    replaces the calibration profile shipped for the GPU (for example one ``wavemodel calibrate`` wrote).
    ``sustained=True`` predicts the call as one of a long run of layers back to back (a network, a
    training or serving loop): where the profile knows the rate the board sustains at its power limit
    for this dtype, no call is faster than its FLOPs at that rate (``wavemodel.power``; ``bound`` says
    "power" where that floor sets the time). The default predicts a call on its own, as our sweeps
    time it.
    """
    gpu = lookup_gpu(gpu_spec)
    shape, g, backend = _resolve(shape, backend)
    name = backend.name if isinstance(backend, KernelConfig) else backend
    gpu.peak_flops(g.dtype)                   # raises ValueError if the card lacks this dtype's mode
    if profile is None:
        profile = calibration.profile_for(gpu, name)
    p = _predict_call(shape, g, gpu, backend, name, profile)
    rate = profile.sustained_flops_per_s.get(g.dtype) if sustained else None
    if not rate:
        return p
    floor = power_floor_s(p.flops, rate)
    latency = np.maximum(p.latency_s, floor)
    bound = np.where(floor > p.latency_s, "power", p.bound)
    if np.ndim(latency) == 0:
        return replace(p, latency_s=float(latency), bound=str(bound))
    return replace(p, latency_s=latency, bound=bound)


def _predict_call(shape, g: Gemm, gpu: GPUSpec, backend, name: str, profile) -> Prediction:
    """One call on its own (``predict_latency`` without the power floor), its arguments resolved.

    A conv kernel with a ``pointwise_family`` runs its 1x1-filter shapes with that family's parameters
    (``configs.for_filter``): shapes of both kinds are predicted apart and merged."""
    raw = candidate_configs(backend, gpu, g.dtype)
    if not (isinstance(shape, Conv2d) and any(c.pointwise_family for c in raw)):
        return _predict_configs(shape, g, gpu, raw, name, profile)

    def as_run(pointwise: bool):
        return tuple(for_filter(c, pointwise, profile.families) for c in raw)

    out_shape = np.broadcast_shapes(*(np.shape(getattr(shape, f)) for f in _dims(shape)))
    pointwise = np.broadcast_to(pointwise_filter(shape), out_shape).ravel()
    if pointwise.all() or not pointwise.any():
        return _predict_configs(shape, g, gpu, as_run(bool(pointwise.any())), name, profile)
    parts = []
    for kind in (True, False):
        idx = np.flatnonzero(pointwise == kind)
        sub = _take(shape, out_shape, idx)
        parts.append((idx, _predict_configs(sub, sub.gemm(), gpu, as_run(kind), name, profile)))
    return _merge(out_shape, parts)


def _take(shape: Gemm | Conv2d, out_shape: tuple, idx: np.ndarray) -> Gemm | Conv2d:
    """The shapes at flat indices ``idx`` of ``shape`` broadcast to ``out_shape``, as one flat shape."""
    return replace(shape, **{f: np.broadcast_to(getattr(shape, f), out_shape).ravel()[idx]
                             for f in _dims(shape)})


def pointwise_filter(shape: Gemm | Conv2d):
    """True where a convolution's filter is 1x1 (any stride or padding); False for a GEMM."""
    if not isinstance(shape, Conv2d):
        return False
    return (np.asarray(shape.r) == 1) & (np.asarray(shape.s) == 1)


def _predict_configs(shape, g: Gemm, gpu: GPUSpec, raw, name: str, profile) -> Prediction:
    """``_predict_call`` for the configurations ``raw``, before the profile is applied."""
    configs = tuple(profile.apply(c) for c in raw)
    for cfg in configs:
        cfg.occupancy(gpu)                    # raises ValueError if the configuration cannot fit
    if len(configs) > 1 and any(_restricted(c) for c in configs):
        parts = _partition(shape, g, configs)
        if len(parts) > 1 or len(parts[0][2]) < len(configs):
            return _merge(np.broadcast_shapes(*(np.shape(getattr(shape, f)) for f in _dims(shape))),
                          [(idx, _predict(sub, sub.gemm() if isinstance(sub, Conv2d) else sub, cs, gpu,
                                          profile, name)) for idx, sub, cs in parts])
    return _predict(shape, g, configs, gpu, profile, name)


def _restricted(c: KernelConfig) -> bool:
    return c.alignment_elements > 1 or c.only_misaligned or c.plain_gemm_only


def _dims(shape) -> tuple[str, ...]:
    if isinstance(shape, Conv2d):
        return ("n", "c", "h", "w", "k", "r", "s", "stride", "padding", "dilation", "groups")
    return ("m", "n", "k", "batch")


def _partition(shape, g: Gemm, configs):
    """Split the shapes by which configurations may run them (alignment class, plain-GEMM conv):
    ``[(flat indices or None, sub-shape, eligible configurations)]``; each part is predicted with
    its own configurations only, so no configuration is evaluated where the library cannot run it."""
    out_shape = np.broadcast_shapes(*(np.shape(getattr(shape, f)) for f in _dims(shape)))
    tests = sorted({("align", c.alignment_elements) for c in configs if c.alignment_elements > 1}
                   | ({("align", max(1, 16 // DTYPE_IN_BYTES[g.dtype]))}
                      if any(c.only_misaligned for c in configs) else set())
                   | ({("plain", 0)} if any(c.plain_gemm_only for c in configs) else set()))
    flags = [np.broadcast_to(g.aligned(a) if kind == "align" else plain_gemm(shape), out_shape).ravel()
             for kind, a in tests]
    code = np.zeros(int(np.prod(out_shape)), dtype=np.int64)
    for bit, f in enumerate(flags):
        code |= f.astype(np.int64) << bit
    parts = []
    for value in np.unique(code):
        held = {t: bool(value >> bit & 1) for bit, t in enumerate(tests)}
        aligned16 = held.get(("align", max(1, 16 // DTYPE_IN_BYTES[g.dtype])), False)
        eligible = tuple(c for c in configs
                         if (c.alignment_elements <= 1 or held[("align", c.alignment_elements)])
                         and not (c.only_misaligned and aligned16)
                         and not (c.plain_gemm_only and not held[("plain", 0)]))
        if not eligible:
            need = min(c.alignment_elements for c in configs)
            raise ValueError(f"n, k: every configuration of this backend needs N and K to be multiples of "
                             f"{need} elements; the catalogue has no fallback for misaligned shapes")
        if out_shape == ():
            return [(None, shape, eligible)]
        idx = np.flatnonzero(code == value)
        parts.append((idx, _take(shape, out_shape, idx), eligible))
    return parts


def _merge(out_shape, parts) -> Prediction:
    """One Prediction of ``out_shape`` from the predictions of its parts (flat indices each)."""
    first = parts[0][1]
    if out_shape == ():
        return first
    size = int(np.prod(out_shape))
    fields = {}
    for f in ("latency_s", "waves", "tiles", "blocks_per_sm", "tail_utilization", "config", "bound", "flops",
              "compute_s", "memory_s", "wave_size"):
        vals = [np.asarray(getattr(p, f)) for _, p in parts]
        out = np.empty(size, dtype=object if f == "config" else np.result_type(*vals))
        for (idx, _), v in zip(parts, vals, strict=True):
            out[idx] = v
        fields[f] = out.reshape(out_shape)
    return Prediction(backend=first.backend, calibrated=first.calibrated, **fields)


def _predict(shape, g: Gemm, configs, gpu: GPUSpec, profile, name) -> Prediction:
    shared = _Shared(g, shape)
    terms = [config_latency(g, c, gpu, profile, shape, shared) for c in configs]
    if len(configs) == 1:
        choice = np.zeros(np.shape(terms[0]["latency_s"]), dtype=np.intp)
    else:
        choice = select(g, configs, terms, shape)
    return _assemble(g, configs, terms, choice, name, profile.calibrated)


def plain_gemm(shape: Gemm | Conv2d):
    """True where a convolution is a plain GEMM (1x1 filter, stride 1, no padding); always for a GEMM."""
    if not isinstance(shape, Conv2d):
        return True
    return (np.asarray(shape.r) == 1) & (np.asarray(shape.s) == 1) & (np.asarray(shape.stride) == 1) & (
        np.asarray(shape.padding) == 0)


def select(g: Gemm, configs, terms, shape: Gemm | Conv2d | None = None) -> np.ndarray:
    """Index of the configuration the library runs, per shape.

    The rule: among the configurations whose alignment the shape meets (and, where the operands are
    16-byte aligned, not the library's misaligned fallbacks), the one the model predicts fastest. A
    library's heuristic aims at its fastest kernel; cuDNN's benchmark mode times them and keeps it.
    """
    out_shape = np.broadcast_shapes(*(np.shape(t["latency_s"]) for t in terms))
    best = np.full(out_shape, np.inf)
    choice = np.zeros(out_shape, dtype=np.intp)
    masks: dict = {}

    def aligned(elements: int):
        if elements not in masks:
            masks[elements] = g.aligned(elements)
        return masks[elements]

    for i, (c, t) in enumerate(zip(configs, terms, strict=True)):
        lat = t["latency_s"]
        if c.alignment_elements > 1:
            lat = np.where(aligned(c.alignment_elements), lat, np.inf)
        if c.only_misaligned:
            lat = np.where(aligned(max(1, 16 // DTYPE_IN_BYTES[g.dtype])), np.inf, lat)
        if c.plain_gemm_only and shape is not None:
            lat = np.where(plain_gemm(shape), lat, np.inf)
        better = lat < best
        best = np.where(better, lat, best)
        choice = np.where(better, i, choice)
    if not np.all(np.isfinite(best)):
        need = min(c.alignment_elements for c in configs)
        raise ValueError(f"n, k: every configuration of this backend needs N and K to be multiples of {need} "
                         f"elements; the catalogue has no fallback for misaligned shapes")
    return choice


def _assemble(g, configs, terms, choice, backend_name, calibrated) -> Prediction:
    shape = np.shape(choice)
    per_config = dict(  # scalars per configuration
        blocks_per_sm=np.array([t["stats"].blocks_per_sm for t in terms]),
        wave_size=np.array([t["stats"].wave_size for t in terms]),
    )
    per_shape = dict(
        latency_s=lambda t: t["latency_s"], compute_s=lambda t: t["compute_s"],
        memory_s=lambda t: t["memory_s"], fixed_s=lambda t: t["fixed_s"],
        waves=lambda t: t["stats"].waves, tiles=lambda t: t["stats"].tiles,
        tail_tiles=lambda t: t["stats"].tail_tiles,
    )
    fields = {k: v[choice] for k, v in per_config.items()}
    if len(configs) == 1:
        fields |= {k: np.broadcast_to(get(terms[0]), shape) for k, get in per_shape.items()}
    else:
        flat = choice.ravel()
        picks = [np.flatnonzero(flat == i) for i in range(len(configs))]
        for key, get in per_shape.items():
            vals = [get(t) for t in terms]
            out = np.empty(flat.shape, dtype=np.result_type(*vals))
            for idx, v in zip(picks, vals, strict=True):
                if idx.size:
                    out[idx] = np.broadcast_to(v, shape).ravel()[idx] if np.ndim(v) else v
            fields[key] = out.reshape(shape)
    fields["tail_utilization"] = fields.pop("tail_tiles") / fields["wave_size"]
    fields["waves"] = np.asarray(fields["waves"]).astype(np.int64)     # integer-valued floats inside
    fields["tiles"] = np.asarray(fields["tiles"]).astype(np.int64)
    fields["bound"] = bound_of(fields["compute_s"], fields["memory_s"], fields.pop("fixed_s"))
    flops = np.broadcast_to(g.flops, shape)
    if shape == ():
        fields = {k: (v.item() if isinstance(v, np.ndarray) else v) for k, v in fields.items()}
        return Prediction(config=configs[int(choice)], flops=float(flops), backend=backend_name,
                          calibrated=calibrated, **fields)
    config = np.empty(len(configs), dtype=object)
    config[:] = configs
    return Prediction(config=config[choice], flops=flops, backend=backend_name, calibrated=calibrated,
                      **fields)
