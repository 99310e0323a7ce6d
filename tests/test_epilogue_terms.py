"""The epilogue and C-write terms our GEMMs switch on: each is off by default (library configurations
are unchanged) and behaves as its physics says where a configuration sets it."""

import dataclasses

import numpy as np
import pytest

import wavemodel as wm
from wavemodel.calibration import UNCALIBRATED
from wavemodel.latency import _Shared, config_latency, dram_bytes

H100 = wm.gpu("h100-sxm")
DRAM_BW = H100.dram_bandwidth_bytes_per_s
# 4 warps, 65536 B smem -> 3 blocks per SM on an H100: one wave = 396 tiles
TC = wm.KernelConfig(name="t_epi", tile_m=128, tile_n=128, tile_k=32, threads=128, regs_per_thread=128,
                     smem_per_block_bytes=65536, efficiency=0.7, tile_overhead_s=0.0, kernel_fixed_s=2e-6,
                     store_bytes_per_s=20e9, bandwidth_efficiency=0.8, write_bandwidth_efficiency=0.4)
SIMT = wm.KernelConfig(name="t_simt_epi", tile_m=128, tile_n=64, tile_k=8, threads=128, regs_per_thread=128,
                       smem_per_block_bytes=12544, math="simt", dtypes=("fp32",), efficiency=0.6,
                       tile_overhead_s=0.0, kernel_fixed_s=2e-6, store_bytes_per_s=100e9,
                       scalar_store_factor=4.0, bandwidth_efficiency=0.8)


def terms(cfg, g):
    return config_latency(g, cfg, H100, UNCALIBRATED, g, _Shared(g, g))


def test_new_fields_default_off():
    cfg = wm.KernelConfig(name="d", tile_m=128, tile_n=128, tile_k=32, threads=128, regs_per_thread=128,
                          smem_per_block_bytes=65536)
    assert not cfg.last_tile_full and not cfg.epilogue_drains_c and cfg.scalar_write_bytes_per_s == 0.0
    g = wm.Gemm(m=np.array([744, 5000]), n=np.array([48, 3000]), k=64)
    t = terms(TC, g)
    assert np.all(t["c_write_s"] == 0.0) and np.all(t["scalar_write_s"] == 0.0)


def test_last_tile_full_stores_an_interior_tile():
    # one wave of 6 tiles of 128 x 128 over a 744 x 48 output: the edge tile (104 rows) stores less,
    # the call waits for an interior one: 128 x 48 fp16 outputs, not the mean 744 * 48 / 6
    g = wm.Gemm(m=744, n=48, k=64)
    mean, full = terms(TC, g), terms(dataclasses.replace(TC, last_tile_full=True), g)
    assert float(mean["epilogue_s"]) == pytest.approx(744 * 48 * 2 / 6 / 20e9, rel=1e-12)
    assert float(full["epilogue_s"]) == pytest.approx(128 * 48 * 2 / 20e9, rel=1e-12)
    assert float(full["compute_s"] - mean["compute_s"]) == pytest.approx(
        (128 - 744 / 6) * 48 * 2 / 20e9, rel=1e-9)
    # a call of whole tiles only: the interior tile is the mean, nothing changes
    even = wm.Gemm(m=768, n=256, k=64)
    assert float(terms(dataclasses.replace(TC, last_tile_full=True), even)["latency_s"]) == pytest.approx(
        float(terms(TC, even)["latency_s"]), rel=1e-12)
    # a smaller problem than one tile stores all of it
    tiny = wm.Gemm(m=16, n=8, k=32)
    assert float(terms(dataclasses.replace(TC, last_tile_full=True), tiny)["epilogue_s"]) == pytest.approx(
        16 * 8 * 2 / 20e9, rel=1e-12)


def test_last_tile_full_counts_busiest_minus_one_mean_tiles():
    # 3 waves' worth on the busiest SM: (busiest - 1) mean tiles and one full one
    cfg = dataclasses.replace(TC, last_tile_full=True)
    g = wm.Gemm(m=3000, n=3000, k=64)
    t, base = terms(cfg, g), terms(TC, g)
    tiles = np.ceil(3000 / 128) ** 2
    mean = 3000 * 3000 * 2 / tiles
    busiest = float(base["epilogue_s"]) * 20e9 / mean
    assert busiest == pytest.approx(round(busiest))
    assert float(t["epilogue_s"]) == pytest.approx(((busiest - 1) * mean + 128 * 128 * 2) / 20e9, rel=1e-12)


def test_epilogue_drains_c_moves_the_writes_out_of_the_dram_term():
    g = wm.Gemm(m=7536, n=3272, k=344)
    off, on = terms(TC, g), terms(dataclasses.replace(TC, epilogue_drains_c=True), g)
    written = 7536 * 3272 * 2 / (DRAM_BW * 0.4)
    reads = (7536 * 344 + 344 * 3272) * 2 / (DRAM_BW * 0.8)
    assert float(on["c_write_s"]) == pytest.approx(written, rel=1e-12)
    assert float(on["dram_s"]) == pytest.approx(reads, rel=1e-9)
    assert float(off["dram_s"]) == pytest.approx(reads + written, rel=1e-9)
    # the busiest SM's epilogue lasts at least C's drain: here the writes outlast its own stores
    assert float(off["epilogue_s"]) < written
    assert float(on["epilogue_s"]) == pytest.approx(written, rel=1e-12)
    grown = float(off["compute_s"]) - float(off["epilogue_s"]) + written
    assert float(on["compute_s"]) == pytest.approx(grown, rel=1e-12)
    # math and writes now add: longer than the larger of the old compute and DRAM terms
    assert float(on["latency_s"]) > float(off["latency_s"])


def test_epilogue_drains_c_keeps_a_longer_store_time():
    # a few tiles storing at 20 GB/s each take longer than the whole C draining at 1.3 TB/s
    g = wm.Gemm(m=256, n=256, k=64)
    off, on = terms(TC, g), terms(dataclasses.replace(TC, epilogue_drains_c=True), g)
    assert float(on["c_write_s"]) < float(off["epilogue_s"])
    assert float(on["epilogue_s"]) == pytest.approx(float(off["epilogue_s"]), rel=1e-12)
    assert float(on["compute_s"]) == pytest.approx(float(off["compute_s"]), rel=1e-12)


def test_scalar_writes_only_where_rows_of_c_are_misaligned():
    cfg = dataclasses.replace(SIMT, scalar_write_bytes_per_s=5e11)
    g = wm.Gemm(m=1332, n=np.array([527, 528]), k=21, dtype="fp32")
    on, off = terms(cfg, g), terms(SIMT, g)
    sw = np.asarray(on["scalar_write_s"])
    assert sw[0] == pytest.approx(1332 * 527 * 4 / 5e11, rel=1e-12)    # N = 527: 2108-byte rows
    assert sw[1] == 0.0                                                 # N = 528: 16-byte aligned rows
    np.testing.assert_allclose(on["dram_s"], off["dram_s"], rtol=1e-12)    # a term of its own
    assert float(np.asarray(on["memory_s"])[0]) == pytest.approx(
        max(float(np.asarray(on["dram_s"])[0]) + sw[0], float(np.asarray(on["l2_s"])[0]),
            float(np.asarray(on["ingest_s"])[0])), rel=1e-12)
    assert np.asarray(on["latency_s"])[1] == np.asarray(off["latency_s"])[1]
    assert np.asarray(on["latency_s"])[0] > np.asarray(off["latency_s"])[0]
    # the DRAM term is the compulsory traffic
    assert float(np.asarray(off["dram_s"])[0]) == pytest.approx(
        float(dram_bytes(wm.Gemm(m=1332, n=527, k=21, dtype="fp32"))) / (DRAM_BW * 0.8), rel=1e-12)


def test_scalar_write_rate_must_not_be_negative():
    with pytest.raises(ValueError, match="scalar_write_bytes_per_s"):
        dataclasses.replace(SIMT, scalar_write_bytes_per_s=-1.0)


def test_library_predictions_do_not_use_the_new_terms():
    # cuBLAS's catalogue leaves them off: its predictions are those of the model without them
    for dtype in ("fp16", "fp32"):
        for c in wm.configs.library_configs("cublas", H100, dtype):
            assert not c.last_tile_full and not c.epilogue_drains_c and not c.scalar_write_bytes_per_s
            assert not c.l2_counts_writes and c.line_aligned_rows_factor == 1
            assert c.off_sector_write_factor == 1     # the catalogue's; the profile fits it


def test_line_aligned_rows_slow_only_the_main_loop_of_line_aligned_k():
    # fp32 A rows of K = 1152 (4608 bytes) all start at one offset of their 128-byte lines; K = 1160,
    # 1168 and 1176 (offsets 32, 64, 96 bytes apart) and K = 1156 (16 bytes) do not
    k = np.array([1152, 1156, 1160, 1168, 1176, 1184])
    assert list(wm.latency.line_aligned_rows(k, "fp32")) == [True, False, False, False, False, True]
    assert list(wm.latency.line_aligned_rows(np.array([64, 72, 128]), "fp16")) == [True, False, True]
    cfg = dataclasses.replace(SIMT, line_aligned_rows_factor=1.2, unhidden_fraction=0.0)
    g = wm.Gemm(m=3712, n=1856, k=k, dtype="fp32")
    on, off = terms(cfg, g), terms(SIMT, g)
    aligned = wm.latency.line_aligned_rows(k, "fp32")
    # the main loop (no tile overhead, no epilogue store of an aligned C beyond its own term) scales
    loop_on = np.asarray(on["compute_s"]) - np.asarray(on["epilogue_s"])
    loop_off = np.asarray(off["compute_s"]) - np.asarray(off["epilogue_s"])
    np.testing.assert_allclose(loop_on[aligned], 1.2 * loop_off[aligned], rtol=1e-12)
    np.testing.assert_allclose(loop_on[~aligned], loop_off[~aligned], rtol=1e-12)
    np.testing.assert_allclose(on["memory_s"], off["memory_s"], rtol=1e-12)    # no bytes added
    assert SIMT.line_aligned_rows_factor == 1.0


def test_line_aligned_rows_factor_must_not_speed_up():
    with pytest.raises(ValueError, match="line_aligned_rows_factor"):
        dataclasses.replace(SIMT, line_aligned_rows_factor=0.9)


def test_off_sector_writes_only_where_rows_of_c_start_off_32_byte_sectors():
    # fp16 rows of 1024 and 1040 outputs (2048, 2080 bytes) start on sectors; 1032 (2064 bytes) and
    # 1048 do not: every other row starts 16 bytes into one
    n = np.array([1024, 1032, 1040, 1048])
    assert list(wm.latency.rows_off_sectors(n, "fp16")) == [False, True, False, True]
    assert list(wm.latency.rows_off_sectors(np.array([1028, 1032]), "fp32")) == [True, False]
    cfg = dataclasses.replace(TC, off_sector_write_factor=1.5)
    g = wm.Gemm(m=8192, n=n, k=16)                      # write-bound: C is most of the bytes
    on, off = terms(cfg, g), terms(TC, g)
    extra = np.asarray(on["scalar_write_s"])
    rate = DRAM_BW * TC.write_bandwidth_efficiency      # C's writes at their own rate
    np.testing.assert_allclose(extra[[1, 3]], 8192 * n[[1, 3]] * 2 * 0.5 / rate, rtol=1e-12)
    assert extra[0] == 0.0 and extra[2] == 0.0
    np.testing.assert_allclose(on["dram_s"], off["dram_s"], rtol=1e-12)    # a term of its own
    lat_on, lat_off = np.asarray(on["latency_s"]), np.asarray(off["latency_s"])
    assert np.all(lat_on[[0, 2]] == lat_off[[0, 2]])
    assert np.all(lat_on[[1, 3]] > lat_off[[1, 3]])
    assert TC.off_sector_write_factor == 1.0


def test_off_sector_write_factor_must_not_speed_up():
    with pytest.raises(ValueError, match="off_sector_write_factor"):
        dataclasses.replace(TC, off_sector_write_factor=0.8)


def test_l2_counts_writes_adds_the_outputs_to_the_l2_term_only():
    g = wm.Gemm(m=np.array([4096, 4096]), n=np.array([1024, 1024]), k=np.array([64, 64]))
    on = terms(dataclasses.replace(TC, l2_counts_writes=True), g)
    off = terms(TC, g)
    l2_bw = UNCALIBRATED.l2_bandwidth(H100, TC)
    np.testing.assert_allclose(np.asarray(on["l2_s"]) - np.asarray(off["l2_s"]), 4096 * 1024 * 2 / l2_bw,
                               rtol=1e-12)                                  # fp16 C through the L2
    np.testing.assert_allclose(on["dram_s"], off["dram_s"], rtol=1e-12)
    np.testing.assert_allclose(on["ingest_s"], off["ingest_s"], rtol=1e-12)
    # split-K writes its fp32 partials, split_k times over
    split = dataclasses.replace(TC, l2_counts_writes=True, split_k=3)
    d = np.asarray(terms(split, g)["l2_s"]) - np.asarray(terms(dataclasses.replace(TC, split_k=3), g)["l2_s"])
    np.testing.assert_allclose(d, 4096 * 1024 * 4 * 3 / l2_bw, rtol=1e-12)
