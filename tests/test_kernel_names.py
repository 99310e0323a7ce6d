import pytest

from wavemodel.kernel_names import launches, main_kernel, parse


def test_nvjet_name_is_column_major_so_its_tile_is_swapped():
    k = parse("nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_NNT")
    # cuBLAS m (256) runs along our N; its cluster 1x2 is 2 along our M
    assert (k.family, k.tile_m, k.tile_n, k.tile_k, k.stages) == ("nvjet", 128, 256, 64, 4)
    assert (k.cluster_m, k.cluster_n, k.cooperative, k.split_k) == (2, 1, True, False)
    s = parse("nvjet_sm90_hsh_64x8_64x16_2x1_v_bz_splitK_NNT")
    assert (s.tile_m, s.tile_n, s.split_k, s.cooperative) == (8, 64, True, False)


def test_cutlass_and_xmma_names():
    c = parse("void cutlass::Kernel2<cutlass_80_simt_sgemm_128x64_8x5_nn_align1>(cutlass_80_simt_sgemm)")
    assert (c.family, c.math, c.tile_m, c.tile_n, c.tile_k, c.stages, c.alignment) == (
        "cutlass", "simt", 64, 128, 8, 5, 1)
    x = parse("sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize64x128x8_stage3_warpsize1x4x1_ffma_aligna4")
    assert (x.family, x.math, x.tile_m, x.tile_n, x.tile_k, x.stages, x.alignment) == (
        "xmma", "simt", 128, 64, 8, 3, 4)


def test_conv_tiles_keep_pixels_along_m():
    x = parse("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_"
              "tilesize256x64x32_warpgroupsize1x1x1", conv=True)
    assert (x.family, x.tile_m, x.tile_n, x.tile_k) == ("xmma_conv", 256, 64, 32)
    c = parse("void cutlass__5x_cudnn::Kernel<cutlass_tensorop_f16_s16816fprop_optimized_f16_"
              "256x64_32x4_nhwc_align8>", conv=True)
    assert (c.family, c.tile_m, c.tile_n, c.alignment) == ("cutlass_conv", 256, 64, 8)
    # a 1x1 conv run by nvjet: its first tile size runs along the output channels, like a GEMM's N
    n = parse("nvjet_sm90_hsh_104x64_64x10_1x4_h_bz_TNN", conv=True)
    assert (n.tile_m, n.tile_n) == (64, 104)


def test_main_kernel_skips_memsets_and_reductions():
    name, k = main_kernel("memset;nvjet_sm90_hsh_64x8_64x16_1x4_h_bz_splitK_NNT;"
                          "void cublasLt::splitKreduce_kernel<32>")
    assert name.startswith("nvjet") and k.split_k
    assert launches("memset;nvjet_x;void cublasLt::splitKreduce_kernel") == 3
    assert parse("memset").family == "aux"


@pytest.mark.parametrize("name", ["", "void some_other_kernel<float>(float*)"])
def test_unknown_names_have_no_tile(name):
    assert main_kernel(name)[1].tile_m == 0
