"""validation/conv_l2_sectors.py: the address replay of tc_f16_conv's loads, on hand-counted calls."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
from conv_l2_sectors import channel_class, ncu_last_launches, ncu_table, read_counts  # noqa: E402

NCU = ROOT / "validation" / "data" / "h100-sxm" / "ncu_conv_misses"


def test_aligned_channels_one_sector_per_thread_pair():
    # 1x1, C = 16 (32 bytes a pixel), 16 pixels, 8 filters: one K tile whose chunks 2-3 lie past K.
    # Each pixel's and each filter's 32 bytes are one sector, read by one thread pair.
    dims = (1, 16, 4, 4, 8, 1, 1, 1, 0)
    assert read_counts(dims, 64, group=2, unit=32) == (16, 8)
    # per row (4 threads) one 128-byte line; per warp (8 rows = 256 bytes) two lines
    assert read_counts(dims, 64, group=4, unit=128) == (16, 8)
    assert read_counts(dims, 64, group=32, unit=128) == (4, 2)


def test_channels_off_sectors_split_every_other_pair():
    # 1x1, C = 24 (48 bytes a pixel): chunks 0-1 of pixel p start at 48 p, on a sector boundary for
    # even p (1 sector) and 16 bytes into one for odd p (2 sectors); chunk 2 is one sector. The
    # filters' 48-byte rows split the same way.
    dims = (1, 24, 2, 2, 8, 1, 1, 1, 0)
    assert read_counts(dims, 64, group=2, unit=32) == (2 + 3 + 2 + 3, 4 * 2 + 4 * 3)


@pytest.mark.parametrize("tile_n", [64, 128])
def test_padding_and_edge_rows_move_nothing(tile_n):
    # 3x3 pad 1 over a 1x1 image: only the centre tap of the one output pixel is inside the input
    dims = (1, 8, 1, 1, 8, 3, 3, 1, 1)
    a, b = read_counts(dims, tile_n, group=1, unit=16)
    assert a == 1                       # one 16-byte chunk of A
    assert b == 8 * 9                   # 8 filters x 72 elements = 9 chunks each


def test_channel_classes():
    assert [channel_class(c) for c in (32, 64, 1024, 16, 48, 400, 8, 24, 120)] == \
        ["aligned"] * 3 + ["straddle"] * 3 + ["off"] * 3


@pytest.fixture(scope="module")
def table():
    """ncu_conv_misses/README.md items 4 and 5 from the committed Nsight Compute counters."""
    return ncu_table(NCU)


def test_ncu_replay_sectors_and_requests(table):
    assert len(table) == 28
    pair = sorted(t["sectors_per_pair_rule"] for t in table)
    assert 0.75 < pair[0] < 0.77 and pair[1] >= 0.88 and pair[-1] < 0.995
    per_slice = {c: [t["requests_per_row_slice"] for t in table if t["channels"] == c]
                 for c in ("aligned", "straddle", "off")}
    assert [len(v) for v in per_slice.values()] == [16, 3, 9]
    med = {c: float(np.median(v)) for c, v in per_slice.items()}
    assert med["aligned"] == pytest.approx(0.92, abs=0.01)
    assert med["straddle"] == pytest.approx(1.18, abs=0.01)
    assert med["off"] == pytest.approx(1.89, abs=0.01)
    assert med["off"] / med["aligned"] == pytest.approx(2.05, abs=0.01)
    assert med["straddle"] / med["aligned"] == pytest.approx(1.28, abs=0.01)


def test_ncu_replay_l2_busy_follows_requests(table):
    hits = [t for t in table if t["read_hit"] >= 0.84]
    assert len(hits) == 23
    per_req = np.array([t["busy_ns_per_k_requests"] for t in hits])
    per_sec = np.array([t["busy_ns_per_k_sectors"] for t in hits])
    assert per_req.min() > 7.5 and per_req.max() < 9.8
    assert per_sec.min() > 3.8 and per_sec.max() < 8.1
    cv = lambda v: v.std() / v.mean()  # noqa: E731
    assert cv(per_req) < 0.09 and cv(per_sec) > 0.2


STALLS = ROOT / "validation" / "data" / "h100-sxm" / "ncu_conv_stalls"
REASONS = ("barrier", "branch_resolving", "dispatch_stall", "drain", "imc_miss", "lg_throttle",
           "long_scoreboard", "math_pipe_throttle", "membar", "mio_throttle", "misc", "no_instruction",
           "not_selected", "selected", "short_scoreboard", "sleeping", "tex_throttle", "wait")


def _stalls(kernel: str) -> list[tuple[float, float, str]]:
    """Per shape of ncu_conv_stalls/shapes.txt: tensor-pipe %, warps-active % and the leading stall."""
    shapes = (STALLS / "shapes.txt").read_text().split()
    out = []
    for met in ncu_last_launches(STALLS / f"{kernel}.csv", len(shapes)):
        lead = max(REASONS, key=lambda r: met[f"smsp__warp_issue_stalled_{r}_per_warp_active.pct"])
        out.append((met["sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed"],
                    met["sm__warps_active.avg.pct_of_peak_sustained_active"], lead))
    return out


def test_ncu_replay_stalls_as_the_readme_says():
    # ncu_conv_stalls/README.md: the table's tensor-pipe column and leading stalls, and the summary
    s64 = _stalls("conv_f16_128x64")
    assert [round(t, 1) for t, _, _ in s64] == [34.1, 11.0, 9.9, 27.1, 38.8, 23.6, 26.7, 10.9, 48.3, 40.9,
                                                11.2, 21.7, 23.2, 24.3]
    leads = [lead for _, _, lead in s64]
    assert leads.count("mio_throttle") == 1 and leads[7] == "mio_throttle"
    assert set(leads) == {"wait", "long_scoreboard", "short_scoreboard", "mio_throttle"}
    s128 = _stalls("conv_f16_128x128")
    assert min(t for t, _, _ in s128) == pytest.approx(8.8, abs=0.05)
    assert max(t for t, _, _ in s128) == pytest.approx(55.4, abs=0.05)
    assert [lead for _, _, lead in s128].count("wait") == 13
    warps = sorted(w for _, w, _ in s128)
    assert warps[:3] == pytest.approx([6.2, 7.1, 7.5], abs=0.05) and warps[3] == pytest.approx(9.3, abs=0.05)
