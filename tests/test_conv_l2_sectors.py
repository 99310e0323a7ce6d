"""validation/conv_l2_sectors.py: the address replay of tc_f16_conv's loads, on hand-counted calls."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
from conv_l2_sectors import channel_class, ncu_table, read_counts  # noqa: E402

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
