"""Width solver: layer staircases against hand-computed waves, network DP against brute force, the
guarantees (no layer slower than it was, aligned widths, budget kept), sizing, and the speed target."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wavemodel as wm
from wavemodel import networks as N
from wavemodel import solver as S

H100 = wm.gpu("h100-sxm")

# A CUDA-core fp32 kernel, 128x128 tiles. Occupancy by hand: 256 threads = 8 warps; 128 registers x 32
# lanes = 4096 per warp, 16384 per sub-partition -> 4 warps each, 16 per SM -> 2 blocks; shared memory
# 100000 + 1024 reserved -> 101120 bytes, 233472 // 101120 = 2 blocks. So a wave is 132 x 2 = 264 tiles.
# CUDA-core math is so slow against memory that every shape below is compute bound, and with
# single_block_speedup 1 a partial wave's math costs as much as a full one's: latency depends on the
# waves and, through the per-tile overhead, on the tiles of the busiest SM (one more every 132 tiles).
SIMT = wm.KernelConfig(name="t_simt_128x128", tile_m=128, tile_n=128, tile_k=8, threads=256,
                       regs_per_thread=128, smem_per_block_bytes=100000, math="simt", dtypes=("fp32", "fp16"))
M_ROWS = 66 * 128          # 66 row tiles: 4 column tiles fill one 264-tile wave


def waves_by_hand(n):
    return -(-(66 * -(-np.asarray(n) // 128)) // 264)      # = ceil(n / 512)


# ------------------------------------------------------------------------------------------ layer level


def test_layer_staircase_matches_hand_computed_waves():
    sc = S.layer_staircase(wm.Gemm(m=M_ROWS, n=1024, k=1024, dtype="fp32"), H100, backend=SIMT, alignment=8,
                           max_width=3072)
    assert sc.at(1024).tiles == 66 * 8
    np.testing.assert_array_equal(sc.waves, waves_by_hand(sc.widths))
    # Every tile on the busiest SM pays its own overhead (0.5 us): busiest = (waves - 1) * 2 +
    # ceil(tail tiles / 132), and 132 tiles are 2 column tiles of 66, so busiest = ceil(n / 256). With
    # speedup 1 the math is 2 t_tile per wave: compute = 2 * waves * t_tile + busiest * 0.5 us, and
    # waves = ceil(busiest / 2), so latency is one value per busiest count.
    tiles = 66 * -(-sc.widths // 128)
    waves = waves_by_hand(sc.widths)
    busiest = (waves - 1) * 2 + -(-(tiles - (waves - 1) * 264) // 132)
    np.testing.assert_array_equal(busiest, -(-sc.widths // 256))
    for b in range(1, 13):
        lat = sc.latency_s[busiest == b]
        assert np.ptp(lat) <= 1e-12 * lat[0]
    # the rises, by hand: t_tile = 128 K iterations x 2*128*128*8 flops at 0.7 of one SM's fp32 rate
    assert (SIMT.tile_overhead_s, SIMT.efficiency) == (0.5e-6, 0.7)
    t_tile = 128 * 2 * 128 * 128 * 8 / (H100.peak_flops("fp32", "simt") / 132 * 0.7)
    rise = np.diff(sc.latency_s)
    in_wave = np.arange(257, 3073, 512)       # busiest 1 -> 2, 3 -> 4, ...: one more tile, same wave
    new_wave = np.arange(513, 3073, 512)      # busiest 2 -> 3, ...: a new wave
    np.testing.assert_allclose(rise[in_wave - 2], 0.5e-6, rtol=1e-9)
    np.testing.assert_allclose(rise[new_wave - 2], 2 * t_tile + 0.5e-6, rtol=1e-9)
    assert np.all(rise[~np.isin(sc.widths[1:], np.r_[in_wave, new_wave])] <= 1e-12 * sc.latency_s[0])
    # step edges on the aligned grid: a step is 256 wide, [256 q + 8, 256 (q + 1)]
    for w, free, cut in [(8, 256, None), (256, 256, None), (264, 512, 256), (504, 512, 256),
                         (512, 512, 256), (520, 768, 512), (1000, 1024, 768), (1024, 1024, 768),
                         (1032, 1280, 1024), (2048, 2048, 1792)]:
        sol = sc.at(w)
        assert (sol.width, sol.free_width, sol.cut_width) == (w, free, cut), w
        assert sol.waves == math.ceil(w / 512)
        assert sol.step_start == (cut or 0) + 8
        assert sol.free_latency_s == sol.latency_s
        if cut:
            assert sol.cut_latency_s < sol.latency_s and sol.cut_saving_s > 0
            # a cut inside a wave saves one tile overhead; a cut to the previous wave saves its math too
            saving = 0.5e-6 if cut % 512 else 2 * t_tile + 0.5e-6
            assert sol.cut_saving_s == pytest.approx(saving, rel=1e-9), w
    # an unaligned width (this kernel needs no alignment): the step and its edges on the aligned grid
    sol = sc.at(1001)
    assert (sol.step_start, sol.free_width, sol.cut_width) == (776, 1024, 768)


def test_solve_layer_conv_and_width_argument():
    conv = wm.Conv2d(n=32, c=64, h=32, w=33, k=64, r=1, s=1, dtype="fp32")        # M = 32*32*33 = 33792
    sol = S.solve_layer(conv, H100, backend=SIMT, width=600, max_width=2048)
    # 264 row tiles of 128 (M = 33792): one column of tiles is exactly one wave
    assert sol.tiles == 264 * 5 and sol.waves == 5
    assert (sol.free_width, sol.cut_width) == (640, 512)
    assert S.solve(conv, H100, backend=SIMT, width=600, max_width=2048) == sol
    with pytest.raises(ValueError, match="alignment"):
        S.solve_layer(conv, H100, alignment=0)
    with pytest.raises(ValueError, match="max_width"):
        S.solve_layer(conv, H100, max_width=32)


def _steps_brute(lat, q, a, rtol=S.RTOL):
    """The definitions, walked one aligned width at a time."""
    n = len(lat)
    aligned = [w for w in range(a, n + 1, a)]
    free = q
    for w in (w for w in aligned if w > q):
        if lat[w - 1] <= lat[q - 1] * (1 + rtol):
            free = w
        else:
            break
    cut = 0
    for w in reversed([w for w in aligned if w < q]):
        if lat[w - 1] < lat[q - 1] * (1 - rtol):
            cut = w
            break
    return free, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=80), st.sampled_from([1, 2, 4, 8]), st.data())
def test_steps_for_agrees_with_brute_force(levels, a, data):
    lat = np.asarray(levels, dtype=float)
    widths = np.arange(1, len(lat) + 1)
    q = data.draw(st.integers(1, len(lat)))
    start, free, cut = S.steps_for(widths, lat, [q], a)
    assert (int(free[0]), int(cut[0])) == _steps_brute(lat, q, a)
    assert start[0] <= q


# ------------------------------------------------------------------------------------------ brute force


def brute_force(net, count, budget_s=None, min_channels=None, alignment=8, gpu=H100, backend=None):
    """Enumerate every combination of candidate widths (predicting each network independently)."""
    names = [v.name for v in net.variables]
    cands = [S.candidate_widths(v, alignment, net.tp) for v in net.variables]
    _, orig = S.network_latency(net, None, gpu, count, "fp16", backend)
    best = None
    for combo in itertools.product(*cands):
        widths = dict(zip(names, map(int, combo), strict=True))
        total, per = S.network_latency(net, widths, gpu, count, "fp16", backend)
        if np.any(per > orig * (1 + S.RTOL)):
            continue
        ch = sum(widths.values())
        if budget_s is not None:
            better = best is None or (ch, -total) > (best[0], -best[1])
            if total <= budget_s * (1 + S.BUDGET_RTOL) and better:
                best = (ch, total, widths)
        elif ch >= min_channels and (best is None or (total, -ch) < (best[1], -best[0])):
            best = (ch, total, widths)
    return best


def _chain(widths, k0=64, fixed_out=16, count_name="batch"):
    layers, prev = [], None
    for i, w in enumerate(widths):
        d = {"name": f"l{i}", "op": "gemm", "k": k0 if prev is None else widths[i - 1], "n": w,
             "out": f"w{i}"}
        if prev is not None:
            d["in"] = prev
        layers.append(d)
        prev = f"w{i}"
    layers.append({"name": "head", "op": "gemm", "k": widths[-1], "n": fixed_out, "in": prev})
    return N.network_from_dict({"name": "chain", "count": count_name, "layers": layers})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.sampled_from([24, 40, 48, 64]), min_size=1, max_size=3),
       count=st.sampled_from([256, 4096, 20000]), frac=st.floats(0.3, 1.0))
def test_exact_dp_agrees_with_brute_force(widths, count, frac):
    net = _chain(widths)
    _, orig = S.network_latency(net, None, H100, count)
    lo = S.solve_network(net, H100, count=count, min_channels=0, method="exact").latency_after_s
    budget = lo + frac * (float(orig.sum()) - lo)
    want = brute_force(net, count, budget_s=budget)
    got = S.solve_network(net, H100, count=count, budget_s=budget, method="exact")
    assert got.channels_after == want[0]
    assert got.latency_after_s <= budget * (1 + S.BUDGET_RTOL)
    _check_guarantees(got, net, count)
    lag = S.solve_network(net, H100, count=count, budget_s=budget, method="lagrangian")
    assert lag.latency_after_s <= budget * (1 + S.BUDGET_RTOL)
    assert lag.channels_after <= want[0] <= lag.channels_upper_bound
    _check_guarantees(lag, net, count)
    # the other objective: least latency at that many channels
    need = sum(int(S.candidate_widths(v, 8)[0]) for v in net.variables) + 8
    need = min(need, sum(net.original_widths.values()))
    want = brute_force(net, count, min_channels=need)
    got = S.solve_network(net, H100, count=count, min_channels=need, method="exact")
    assert got.latency_after_s == pytest.approx(want[1], rel=1e-9)
    lag = S.solve_network(net, H100, count=count, min_channels=need, method="lagrangian")
    assert lag.channels_after >= need and lag.latency_lower_bound_s <= want[1] * (1 + 1e-9)


def test_exact_dp_agrees_with_brute_force_on_branches_and_ties():
    """Two chains joined by a fixed (residual) width, tied outputs, a depthwise layer and a flatten."""
    net = N.network_from_dict({"name": "branches", "layers": [
        {"name": "c1", "op": "conv", "c": 16, "h": 14, "k": 32, "r": 1, "out": "a"},
        {"name": "dw", "op": "conv", "c": 32, "h": 14, "k": 32, "r": 3, "padding": 1, "in": "a",
         "groups": "depthwise"},
        {"name": "c2", "op": "conv", "c": 32, "h": 14, "k": 24, "r": 3, "padding": 1, "in": "a", "out": "b"},
        {"name": "c3", "op": "conv", "c": 24, "h": 14, "k": 16, "r": 1, "in": "b"},
        {"name": "g1", "op": "gemm", "k": 16 * 196, "n": 40, "out": "f"},
        {"name": "g2", "op": "gemm", "k": 16 * 196, "n": 40, "out": "f"},
        {"name": "g3", "op": "gemm", "k": 40, "n": 24, "in": "f", "out": "e"},
        {"name": "g4", "op": "gemm", "k": 24 * 4, "n": 10, "in": "e", "in_mult": 4},
    ]})
    assert len(N.segments(net)) == 2
    _, orig = S.network_latency(net, None, H100, 64)
    lo = S.solve_network(net, H100, count=64, min_channels=0).latency_after_s
    for frac in (0.0, 0.2, 0.5, 0.8, 1.0):
        budget = lo + frac * (float(orig.sum()) - lo)
        want = brute_force(net, 64, budget_s=budget)
        got = S.solve_network(net, H100, count=64, budget_s=budget, method="exact")
        assert got.channels_after == want[0]
        assert got.latency_after_s <= budget * (1 + S.BUDGET_RTOL)


# ------------------------------------------------------------------------------------------ guarantees


def _check_guarantees(sol, net, count, backend=None):
    by = {x.name: x for x in net.layers}
    total, per = S.network_latency(net, sol.widths_after, H100, count, sol.dtype, backend)
    assert total == pytest.approx(sol.latency_after_s, rel=1e-9)
    for change, lat in zip(sol.layers, per, strict=True):
        assert change.latency_after_s == pytest.approx(lat, rel=1e-9)
        # never slower than the original layer, but where it keeps the reference widths (keep and
        # reference modes must reach those: a uniform width off 32-byte sectors may be slower)
        at_reference = change.width_reference is not None and change.width_after == change.width_reference
        assert change.latency_after_s <= change.latency_before_s * (1 + 1e-9) or at_reference, change.name
        assert change.width_after <= change.width_before and change.in_width_after <= change.in_width_before
        assert by[change.name].name == change.name
    for v in net.variables:
        w = sol.widths_after[v.name]
        step = S.width_step(v, sol.alignment, net.tp)
        assert w % sol.alignment == 0 or w == v.width
        assert w % step == 0 or w == v.width
        assert 1 <= w <= v.width
    if sol.budget_s is not None:
        assert sol.latency_after_s <= sol.budget_s * (1 + S.BUDGET_RTOL)
    assert sol.latency_after_s <= sol.latency_before_s * (1 + 1e-9)
    if sol.channels_upper_bound is not None:
        assert sol.channels_after <= sol.channels_upper_bound


CASES = [("resnet50", 32), ("llama-7b-mlp", 4096), ("mobilenetv2", 8), ("vgg16", 4), ("bert-base", 512),
         ("gpt2", 1024)]


@pytest.mark.parametrize("name, count", CASES)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_keep_mode_guarantees(name, count, keep):
    net = N.load_network(name)
    sol = S.solve_network(net, H100, count=count, keep=keep)
    _check_guarantees(sol, net, count)
    uni = S.uniform_widths(net, keep)
    assert sol.widths_reference == uni
    assert sol.channels_reference == sum(uni.values())
    assert sol.channels_after >= sol.channels_reference
    assert sol.latency_after_s <= sol.latency_reference_s * (1 + 1e-12)
    for v in net.variables:      # within max_change of the uniform width
        assert abs(sol.widths_after[v.name] - uni[v.name]) <= S.DEFAULT_MAX_CHANGE * v.width + 1e-9
    other = S.solve_network(net, H100, count=count, keep=keep, match="channels")
    _check_guarantees(other, net, count)
    assert other.channels_after >= other.channels_reference
    assert other.latency_after_s <= sol.latency_reference_s * (1 + 1e-12)


def test_uniform_widths_round_to_alignment():
    net = N.load_network("resnet50")
    uni = S.uniform_widths(net, 0.7)
    assert uni["layer1.0.a"] == 48           # 44.8 -> 48
    assert uni["layer4.0.a"] == 360          # 358.4 -> 360
    assert uni["stem"] == 48
    assert all(w % 8 == 0 for w in uni.values())
    assert S.uniform_widths(net, 0.01)["stem"] == 8       # at least one step
    with pytest.raises(ValueError, match="keep"):
        S.uniform_widths(net, 0)


def test_budget_mode_widths_sit_on_step_edges():
    net = N.load_network("resnet50")
    _, orig = S.network_latency(net, None, H100, 32)
    sol = S.solve_network(net, H100, batch=32, budget_s=0.8 * float(orig.sum()))
    _check_guarantees(sol, net, 32)
    assert sol.optimal and sol.method == "exact"
    for v in net.variables:
        w = sol.widths_after[v.name]
        if w == v.width:
            continue
        wider = dict(sol.widths_after, **{v.name: w + 8})
        total, per = S.network_latency(net, wider, H100, 32)
        # one step wider costs time (or would make a layer slower than it was)
        assert total > sol.latency_after_s * (1 + 1e-12) or np.any(per > orig * (1 + S.RTOL))


def test_budget_at_or_above_original_keeps_everything():
    net = N.load_network("llama-7b-mlp")
    sol = S.solve_network(net, H100, tokens=4096, budget_s=1.0)
    assert sol.widths_after == net.original_widths and sol.optimal


def test_lagrangian_is_certified_and_close_to_exact():
    net = N.load_network("vgg16")
    kw = dict(batch=8, keep=0.6, max_change=None)
    lag = S.solve_network(net, H100, method="lagrangian", **kw)
    ex = S.solve_network(net, H100, method="exact", **kw)
    _check_guarantees(lag, net, 8)
    _check_guarantees(ex, net, 8)
    assert lag.channels_after <= ex.channels_after <= lag.channels_upper_bound
    assert ex.channels_upper_bound == ex.channels_after


def test_large_transformers_use_lagrangian_with_tensor_parallel_steps():
    sol = S.solve_network("llama-70b", H100, tokens=2048, keep=0.7, tp=8)
    net = N.load_network("llama-70b", tp=8)
    assert sol.method == "lagrangian"
    assert sol.channels_after <= sol.channels_upper_bound
    assert sol.latency_after_s <= sol.budget_s * (1 + S.BUDGET_RTOL)
    for v in net.variables:
        w = sol.widths_after[v.name]
        assert w % (1024 if v.name.endswith("attn") else 64) == 0      # whole GQA groups / aligned shards


def test_reference_and_min_keep():
    net = N.load_network("resnet50")
    ref = {v.name: v.width // 2 for v in net.variables}
    sol = S.solve_network(net, H100, batch=32, reference=ref)
    assert sol.mode == "reference" and sol.widths_reference == ref
    _check_guarantees(sol, net, 32)
    floor = S.solve_network(net, H100, batch=32, budget_s=sol.latency_reference_s, min_keep=0.5)
    assert all(floor.widths_after[v.name] >= 0.5 * v.width for v in net.variables)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch=32), "exactly one of budget_s"),
    (dict(batch=32, keep=0.5, budget_s=1e-3), "exactly one of budget_s"),
    (dict(keep=0.5), "exactly one of count, batch or tokens"),
    (dict(batch=32, keep=0.5, method="greedy"), "method"),
    (dict(batch=32, budget_s=1e-9), "budget: .* below the least"),
    (dict(batch=32, budget_s=-1.0), "budget_s"),
    (dict(batch=32, min_channels=10**9), "min_channels"),
    (dict(batch=32, keep=0.5, max_change=2.0), "max_change"),
    (dict(batch=32, keep=0.5, dtype="fp64"), "dtype"),
    (dict(batch=0, keep=0.5), "batch"),
    (dict(batch=32, reference={"nope": 8}), "unknown width"),
])
def test_solve_network_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.solve_network("resnet50", H100, **kwargs)


# ------------------------------------------------------------------------------------------ sizing


def test_size_transformer_vocab_padding_by_hand():
    # one explicit kernel: 4096 tokens are 32 row tiles; 50257 columns are ceil(50257 / 128) = 393 column
    # tiles, 32 x 393 = 12576 tiles, ceil(12576 / 264) = 48 waves. 48 waves hold 12672 = 32 x 396 tiles:
    # 396 x 128 = 50688 columns cost the same (free), and nothing larger is faster
    rep = S.size_transformer("gpt2", H100, tokens=4096, dtype="fp32", dimensions=("vocab",), backend=SIMT)
    (adv,) = rep.advice
    kinds = {o.kind: o for o in adv.options}
    assert set(kinds) == {"free"}
    assert kinds["free"].value == 50688 and kinds["free"].delta_s == 0
    (change,) = kinds["free"].changes
    assert change.gemm == "lm_head" and (change.tiles_before, change.tiles_after) == (12576, 12672)
    assert change.waves_before == change.waves_after == 48
    assert change.tail_before == pytest.approx((12576 - 47 * 264) / 264) and change.tail_after == 1.0
    assert "tiles 12576->12672" in change.reason and "waves 48" in change.reason


def test_size_transformer_ffn_cut_by_hand():
    # ffn = 3072: up_proj's N (24 column tiles) and down_proj's K (3072 / 8 = 384 K steps). A wider ffn
    # adds K steps at once (no free width); the next lower step is the widest size with fewer tiles or
    # K steps, 3064 (383 K steps)
    rep = S.size_transformer("gpt2", H100, tokens=4096, dtype="fp32", dimensions=("ffn",), backend=SIMT)
    (adv,) = rep.advice
    kinds = {o.kind: o for o in adv.options}
    assert "free" not in kinds and "padding" not in kinds
    assert kinds["cheaper"].value == 3064 and kinds["cheaper"].delta_s < 0
    reasons = [c.reason for c in kinds["cheaper"].changes]
    assert any(r.startswith("down_proj x12") for r in reasons)


def test_size_transformer_library_options_are_consistent():
    rep = S.size_transformer("llama-7b", H100, tokens=4096, tp=2)
    assert [a.dimension for a in rep.advice] == list(S.SIZING_DIMENSIONS)
    for adv in rep.advice:
        assert adv.searched[0] <= adv.current <= adv.searched[1]
        for o in adv.options:
            assert o.kind in ("free", "cheaper", "padding")
            if o.kind == "free":
                assert o.value > adv.current and abs(o.delta_s) <= 1e-9 * adv.latency_s
            elif o.kind == "cheaper":
                assert o.value < adv.current and o.delta_s < 0 and adv.dimension != "vocab"
            else:
                assert o.value > adv.current and o.delta_s < 0
            assert o.up_to >= o.value
            assert all(c.reason for c in o.changes)
    d = rep.to_dict()
    assert d["model"] == "llama-7b" and d["tp"] == 2


def test_size_transformer_rejects_bad_input():
    with pytest.raises(ValueError, match="transformer preset"):
        S.size_transformer("resnet50", H100)
    with pytest.raises(ValueError, match="tp"):
        S.size_transformer("llama-7b", H100, tp=3)
    with pytest.raises(ValueError, match="dimensions"):
        S.size_transformer("gpt2", H100, dimensions=("depth",))


def test_transformer_gemms_shapes():
    cfg = N.transformer_config("llama-70b") | {"dtype": "fp16"}
    gemms = {name: (count, g) for name, count, g in S.transformer_gemms(cfg, 128, tp=8)}
    assert gemms["q_proj"][1].n == 1024 and gemms["k_proj, v_proj"][1].n == 128
    assert gemms["gate_proj, up_proj"][0] == 160 and gemms["down_proj"][1].k == 3584


# ------------------------------------------------------------------------------------------ speed


@pytest.mark.benchmark(group="solver", min_rounds=3)
def test_benchmark_resnet50_every_layer_every_width(benchmark):
    """Issue 5's speed target: every ResNet-50 layer at every width 1..original (and up to twice, for
    free capacity) on one CPU core in under a second."""
    result = benchmark.pedantic(S.network_staircases, args=("resnet50", H100), kwargs=dict(count=32),
                                rounds=3, iterations=1)
    assert len(result) == 54
    assert all(len(sc.widths) >= net_w for sc, net_w in zip(result, [x.out_width for x in
                                                                      N.load_network("resnet50").layers],
                                                             strict=True))
    if benchmark.stats is not None and benchmark.stats.stats.min is not None:
        assert benchmark.stats.stats.min < 1.0


@pytest.mark.benchmark(group="solver", min_rounds=3)
def test_benchmark_resnet50_network_solve(benchmark):
    sol = benchmark.pedantic(S.solve_network, args=("resnet50", H100), kwargs=dict(batch=32, keep=0.7),
                             rounds=3, iterations=1)
    assert sol.method == "exact"
