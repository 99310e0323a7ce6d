import csv
from pathlib import Path

import pytest

import wavemodel as wm
from wavemodel.occupancy import occupancy

H100 = wm.gpu("h100-sxm")
DATA = Path(__file__).resolve().parents[1] / "validation" / "data" / "h100-sxm" / "occupancy.csv"


@pytest.mark.parametrize("threads,regs,smem,blocks,limiter", [
    # 8 warps; 128 regs -> 4096 regs/warp, 16384/4096 = 4 warps per partition -> 16 warps -> 2 blocks
    (256, 128, 65536, 2, "registers"),
    # smem: (100000 + 1024) rounded to 128 -> 101120; 233472 // 101120 = 2; regs 32 -> 16 blocks
    (128, 32, 100000, 2, "shared_memory"),
    # 32 threads, tiny: the 32-block limit
    (32, 16, 0, 32, "blocks"),
    # 1024 threads = 32 warps: 64 // 32 = 2 blocks; 32 regs: 1024 regs/warp -> 16 warps/partition -> 2
    (1024, 32, 0, 2, "warps"),
    # 255 regs -> 8160 -> 8192 per warp: 2 warps/partition -> 8 warps; 4 warps/block -> 2 blocks
    (128, 255, 0, 2, "registers"),
    # 96 threads = 3 warps; 168 regs -> 5376/warp; 16384 // 5376 = 3 per partition -> 12 warps -> 4 blocks
    (96, 168, 0, 4, "registers"),
])
def test_hand_computed_cases(threads, regs, smem, blocks, limiter):
    occ = occupancy(threads, regs, smem, H100)
    assert occ.blocks_per_sm == blocks
    assert occ.limiter == limiter


def test_block_that_cannot_fit_names_the_field():
    with pytest.raises(ValueError, match="threads: 2048 exceeds"):
        occupancy(2048, 32, 0, H100)
    with pytest.raises(ValueError, match="smem_per_block_bytes"):
        occupancy(128, 32, 240_000, H100)
    with pytest.raises(ValueError, match="regs_per_thread: 256"):
        occupancy(128, 256, 0, H100)
    with pytest.raises(ValueError, match="regs_per_thread: 255 registers x 1024 threads"):
        occupancy(1024, 255, 0, H100)


def test_config_that_cannot_fit_is_a_value_error_from_predict():
    cfg = wm.KernelConfig(name="too_big", tile_m=128, tile_n=128, tile_k=32, threads=1024,
                          regs_per_thread=128, smem_per_block_bytes=0)
    with pytest.raises(ValueError, match="config 'too_big' cannot run"):
        wm.predict_latency((256, 256, 256), H100, backend=cfg)


def test_replay_of_cuda_occupancy_measured_on_the_h100():
    """Every (threads, registers, smem) combination CUDA answered on the H100.

    Measured by validation/occupancy_check.py.
    """
    rows = list(csv.DictReader(DATA.open()))
    assert len(rows) >= 50
    mismatches = []
    for r in rows:
        t, regs = int(r["threads"]), int(r["regs_per_thread"])
        smem = int(r["smem_static_bytes"]) + int(r["smem_dynamic_bytes"])
        try:
            got = occupancy(t, regs, smem, H100).blocks_per_sm
        except ValueError:
            got = 0
        if got != int(r["blocks_per_sm_cuda"]):
            mismatches.append((t, regs, smem, got, r["blocks_per_sm_cuda"]))
    assert not mismatches, mismatches[:10]
    limiters = {r["limiter"] for r in rows}
    assert {"warps", "registers", "shared_memory", "blocks"} <= limiters   # every rule was exercised


@pytest.mark.gpu
def test_occupancy_equals_cuda_on_this_gpu():
    from wavemodel.hardware.occupancy_probe import measure_grid

    gpu = wm.gpu("local")
    rows = measure_grid(gpu, reg_caps=(32, 64, 128, 255), threads=(64, 128, 256, 512, 1024),
                        smem=(0, 12288, 70000, 116736))
    assert len(rows) >= 50
    bad = [r for r in rows if r["blocks_per_sm_cuda"] != r["blocks_per_sm_model"]]
    assert not bad, bad[:5]
