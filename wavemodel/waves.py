"""Tiling and wave arithmetic, numpy-vectorised over problem dimensions.

A GEMM of ``batch x M x N`` outputs run with a ``tile_m x tile_n`` CTA tile and split-K factor ``s``
launches ``tiles = batch * ceil(M/tile_m) * ceil(N/tile_n) * s`` blocks (each tile count rounded up
to a multiple of the cluster shape). ``wave_size = sm_count * blocks_per_sm`` blocks run at once;
``waves = ceil(tiles / wave_size)``; the last wave holds ``tail_tiles`` blocks, so it is
``tail_utilization = tail_tiles / wave_size`` full, and its busiest SM runs
``ceil(tail_tiles / sm_count)`` blocks (blocks are dealt to SMs breadth first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .configs import KernelConfig
from .gpus import GPUSpec


def ceil_div(a, b):
    """Integer ceil(a / b), elementwise."""
    return -(-np.asarray(a) // b)


@dataclass(frozen=True)
class WaveStats:
    tiles_m: np.ndarray
    tiles_n: np.ndarray
    tiles: np.ndarray
    blocks_per_sm: int
    wave_size: int
    waves: np.ndarray
    tail_tiles: np.ndarray
    tail_utilization: np.ndarray
    tail_blocks_per_sm: np.ndarray     # blocks on the busiest SM in the last wave
    tile_utilization: np.ndarray       # useful outputs / outputs computed (tile quantization)


def wave_size(cfg: KernelConfig, gpu: GPUSpec) -> int:
    """Blocks resident on the whole GPU at once, in whole clusters."""
    per_gpu = gpu.sm_count * cfg.occupancy(gpu).blocks_per_sm
    return max(per_gpu // cfg.cluster_size, 1) * cfg.cluster_size


def wave_stats(m, n, batch, cfg: KernelConfig, gpu: GPUSpec) -> WaveStats:
    """Tile counts, waves and tail of a ``batch x m x n`` output under ``cfg`` on ``gpu``."""
    tiles_m = ceil_div(ceil_div(m, cfg.tile_m), cfg.cluster_m) * cfg.cluster_m
    tiles_n = ceil_div(ceil_div(n, cfg.tile_n), cfg.cluster_n) * cfg.cluster_n
    tiles = np.asarray(batch) * tiles_m * tiles_n * cfg.split_k
    bps = cfg.occupancy(gpu).blocks_per_sm
    size = wave_size(cfg, gpu)
    waves = ceil_div(tiles, size)
    tail = tiles - (waves - 1) * size
    computed = (tiles_m * cfg.tile_m) * (tiles_n * cfg.tile_n)
    return WaveStats(
        tiles_m=tiles_m, tiles_n=tiles_n, tiles=tiles, blocks_per_sm=bps, wave_size=size, waves=waves,
        tail_tiles=tail, tail_utilization=tail / size,
        tail_blocks_per_sm=ceil_div(tail, gpu.sm_count),
        tile_utilization=(np.asarray(m) * np.asarray(n)) / computed,
    )

