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
    m: np.ndarray
    n: np.ndarray
    tile_m: int
    tile_n: int
    sm_count: int
    tiles_m: np.ndarray
    tiles_n: np.ndarray
    tiles: np.ndarray
    blocks_per_sm: int
    wave_size: int
    waves: np.ndarray
    tail_tiles: np.ndarray             # blocks in the last wave

    @property
    def tail_utilization(self):
        """How full the last wave is: tail_tiles / wave_size, in (0, 1]."""
        return self.tail_tiles / self.wave_size

    @property
    def tail_blocks_per_sm(self):
        """Blocks on the busiest SM in the last wave (blocks are dealt to SMs breadth first)."""
        return ceil_div(self.tail_tiles, self.sm_count)

    @property
    def tile_utilization(self):
        """Useful outputs / outputs computed: the tile-quantization efficiency, in (0, 1]."""
        return (np.asarray(self.m) * np.asarray(self.n)) / (
            (self.tiles_m * self.tile_m) * (self.tiles_n * self.tile_n))


def wave_size(cfg: KernelConfig, gpu: GPUSpec) -> int:
    """Blocks resident on the whole GPU at once, in whole clusters."""
    per_gpu = gpu.sm_count * cfg.occupancy(gpu).blocks_per_sm
    return max(per_gpu // cfg.cluster_size, 1) * cfg.cluster_size


def wave_stats(m, n, batch, cfg: KernelConfig, gpu: GPUSpec) -> WaveStats:
    """Tile counts, waves and tail of a ``batch x m x n`` output under ``cfg`` on ``gpu``."""
    tiles_m = ceil_div(ceil_div(m, cfg.tile_m), cfg.cluster_m) * cfg.cluster_m
    tiles_n = ceil_div(ceil_div(n, cfg.tile_n), cfg.cluster_n) * cfg.cluster_n
    return waves_of(m, n, batch, tiles_m, tiles_n, cfg, gpu)


def waves_of(m, n, batch, tiles_m, tiles_n, cfg: KernelConfig, gpu: GPUSpec) -> WaveStats:
    """WaveStats from tile counts already rounded to the cluster (integer- or float-valued arrays:
    the model's hot path passes exact float64 counts, which numpy divides much faster)."""
    tiles = tiles_m * tiles_n * (np.asarray(batch) * cfg.split_k)
    size = wave_size(cfg, gpu)
    waves = ceil_div(tiles, size) if np.asarray(tiles).dtype.kind in "iu" else np.ceil(tiles / size)
    return WaveStats(
        m=m, n=n, tile_m=cfg.tile_m, tile_n=cfg.tile_n, sm_count=gpu.sm_count, tiles_m=tiles_m,
        tiles_n=tiles_n, tiles=tiles, blocks_per_sm=cfg.occupancy(gpu).blocks_per_sm, wave_size=size,
        waves=waves, tail_tiles=tiles - (waves - 1) * size,
    )
