"""validation/conv_l2_sectors.py: the address replay of tc_f16_conv's loads, on hand-counted calls."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
from conv_l2_sectors import read_counts  # noqa: E402


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
