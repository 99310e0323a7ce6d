"""validation/data/h100-sxm/line_probe/: K staircases across multiples of 64 on our convs, timed after the
model's predictions were committed; the table of its README."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from validation import line_probe as P  # noqa: E402
from wavemodel import datasets as D  # noqa: E402
from wavemodel.commands.validate import read_profile  # noqa: E402

FOLDER = P.DATA / "line_probe"


@pytest.fixture(scope="module")
def rows():
    return P.comparison(FOLDER)


def test_the_rows_are_the_probe_held_out(rows):
    data = D.read_csv(FOLDER / "conv_own_lines.csv")
    assert len(data) == len(rows) == 40 and {r.set for r in data} == {"evaluation"}
    committed = {(r.kernel, r.shape) for r in D.load_dir(P.DATA).rows}
    assert not committed & {(r.kernel, r.shape) for r in data}


def test_the_predictions_are_the_model_of_their_time(rows):
    then = read_profile(FOLDER / P.PREDICTED_WITH, "h100-sxm")["own"]
    by = {(r["kernel"], r["series"], r["k"]): r for r in rows}
    for kernel, series, shape in P.shapes()[::4]:
        r = by[kernel, series, shape.k]
        assert P.predict(kernel, shape, profile=then) == pytest.approx(r["predicted"], abs=1e-3)
        assert P.predict(kernel, shape, factor=1.0, profile=then) == pytest.approx(r["without"], abs=1e-3)


def test_the_table_as_the_readme_says(rows):
    rows = P.with_model_now(rows)
    got = {key: tuple(round(v[k], 3) for k in ("measured", "predicted", "without", "now"))
           for key, v in P.line_ratios(rows).items()}
    assert got == {
        ("conv_f16_128x64", "1x1 C64 K256"): (0.936, 0.899, 0.983, 0.899),
        ("conv_f16_128x64", "1x1 C64 K512"): (0.886, 0.896, 0.991, 0.896),
        ("conv_f16_128x64", "1x1 C128 K1024"): (0.910, 0.917, 0.988, 0.917),
        ("conv_f16_128x64", "3x3 s2 C32 K256"): (0.924, 0.889, 0.950, 0.873),
        ("conv_f16_128x128", "1x1 C64 K256"): (1.020, 0.975, 0.975, 0.975),
        ("conv_f16_128x128", "1x1 C64 K512"): (0.977, 0.989, 0.989, 0.989),
        ("conv_f16_128x128", "1x1 C128 K1024"): (1.020, 0.984, 0.984, 0.984),
        ("conv_f16_128x128", "3x3 s2 C32 K256"): (0.987, 0.906, 0.915, 0.906),
    }
    for key in ("predicted", "without", "now"):
        err = np.abs([r[key] / r["measured"] - 1 for r in rows]) * 100
        summary = (round(float(np.median(err)), 1), round(float(np.percentile(err, 90)), 1),
                   int((err > 8).sum()))
        assert summary == {"predicted": (2.7, 10.1, 6), "without": (4.8, 9.2, 9), "now": (2.7, 8.1, 5)}[key]
