"""Occupancy calculator: resident blocks per SM, by CUDA's rules (cuda_occupancy.h).

Four limits, the smallest wins:
- warps: ``max_warps_per_sm // ceil(threads / 32)``;
- blocks: ``max_blocks_per_sm``;
- registers: each warp gets ``ceil(regs * 32, 256)`` registers, allocated per warp-scheduler
  sub-partition, so ``(regs_per_sm / 4 // regs_per_warp) * 4 // warps_per_block``; a block whose
  registers, with its warps rounded up to a multiple of 4, exceed ``max_regs_per_block`` cannot launch;
- shared memory: ``(smem + 1 KiB reserve)`` rounded up to the allocation unit, against the SM's
  shared memory (the default carveout, which CUDA sets to the maximum when a kernel needs it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpus import GPUSpec

LIMITERS = ("warps", "blocks", "registers", "shared_memory")


@dataclass(frozen=True)
class Occupancy:
    blocks_per_sm: int
    limiter: str                   # the resource that sets blocks_per_sm: one of LIMITERS
    limits: dict                   # every resource's own limit on blocks per SM
    warps_per_block: int
    regs_per_block: int            # as allocated
    smem_per_block_bytes: int      # as allocated (reserve and rounding included)

    @property
    def active_warps_per_sm(self) -> int:
        return self.blocks_per_sm * self.warps_per_block


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(threads: int, regs_per_thread: int, smem_per_block_bytes: int, gpu: GPUSpec) -> Occupancy:
    """Blocks of ``threads`` threads resident on one SM; raises ValueError if one cannot fit."""
    for name, v, lo in (("threads", threads, 1), ("regs_per_thread", regs_per_thread, 0),
                        ("smem_per_block_bytes", smem_per_block_bytes, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if threads > gpu.max_threads_per_block:
        raise ValueError(f"threads: {threads} exceeds the block limit of {gpu.max_threads_per_block} "
                         f"on {gpu.display_name}; allowed values: 1..{gpu.max_threads_per_block}")
    if regs_per_thread > gpu.max_regs_per_thread:
        raise ValueError(f"regs_per_thread: {regs_per_thread} exceeds {gpu.max_regs_per_thread} "
                         f"on {gpu.display_name}; allowed values: 0..{gpu.max_regs_per_thread}")
    if smem_per_block_bytes > gpu.max_smem_per_block_bytes:
        raise ValueError(f"smem_per_block_bytes: {smem_per_block_bytes} exceeds the per-block maximum of "
                         f"{gpu.max_smem_per_block_bytes} bytes on {gpu.display_name}")

    warps = -(-threads // gpu.warp_size)
    limits = {"warps": gpu.max_warps_per_sm // warps, "blocks": gpu.max_blocks_per_sm}

    parts = gpu.warp_schedulers_per_sm
    regs_per_warp = _round_up(regs_per_thread * gpu.warp_size, gpu.reg_alloc_unit_regs)
    regs_block = regs_per_warp * warps
    if regs_per_warp == 0:
        limits["registers"] = gpu.max_blocks_per_sm
    elif max(regs_block, regs_per_warp * _round_up(warps, parts)) > gpu.max_regs_per_block:
        raise ValueError(
            f"regs_per_thread: {regs_per_thread} registers x {threads} threads exceed the "
            f"{gpu.max_regs_per_block} registers a block may use on {gpu.display_name}"
        )
    else:
        warps_per_partition = (gpu.regs_per_sm // parts) // regs_per_warp
        limits["registers"] = (warps_per_partition * parts) // warps

    smem = _round_up(smem_per_block_bytes + gpu.smem_reserved_per_block_bytes, gpu.smem_alloc_unit_bytes)
    limits["shared_memory"] = gpu.smem_per_sm_bytes // smem if smem else gpu.max_blocks_per_sm

    blocks = min(limits.values())
    if blocks < 1:   # unreachable after the checks above, kept as a guard for inconsistent catalogues
        raise ValueError(f"config: a block cannot fit on an SM of {gpu.display_name} ({limits})")
    limiter = min(LIMITERS, key=lambda r: (limits[r], LIMITERS.index(r)))
    return Occupancy(blocks, limiter, limits, warps, regs_block, smem)
