"""validation/residual_neighbours.py: the nearest-neighbour bound on how much of the conv model's error a
smooth function of the shape could take up."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from validation import residual_neighbours as RN  # noqa: E402


def test_a_smooth_error_is_taken_up_and_noise_is_not():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.linspace(0, 10, 400), np.full(400, 3.0)])      # a constant feature: dropped
    smooth = 0.3 * np.sin(x[:, 0])                                          # up to 35 % off, smooth
    assert RN.corrected_misses(x, smooth, ks=(3,))[3] == 0
    assert (np.abs(np.expm1(smooth)) > RN.MISS).sum() > 200
    noise = rng.normal(0.0, 0.1, 400)                                       # no neighbour knows it
    misses = int((np.abs(np.expm1(noise)) > RN.MISS).sum())
    assert RN.corrected_misses(x, noise, ks=(5,))[5] > 0.8 * misses


def test_the_committed_conv_rows_as_conv_own_extra_md_says(capsys):
    assert RN.main([]) == 0
    out = capsys.readouterr().out
    assert "2548 conv rows of our kernels; 245 past 8% as predicted; issue 3's p90 bound allows 254" in out
    counts = [int(line.split(": ")[1].split()[0]) for line in out.splitlines()[1:]]
    assert counts == [204, 206, 198, 220]
