"""validation/solver_benefit.py on the CPU: the planned widths, CSV resume, summary; no GPU needed."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import solver_benefit as B  # noqa: E402
from wavemodel import networks as N  # noqa: E402
from wavemodel import solver as S  # noqa: E402


@pytest.fixture(scope="module")
def planned():
    return B.plan("h100-sxm", ratios=(0.5, 0.7))


def test_plan_rows_and_widths(planned):
    keys = [p.key for p in planned]
    assert len(keys) == len(set(keys)) == 2 * (1 + 2 * 3)
    assert ("resnet50", "1", "uniform") in keys and ("llama-7b-mlp", "0.7", "solver_min_latency") in keys
    by = {p.key: p for p in planned}
    for p in planned:
        net = N.load_network(p.network)
        assert p.count == B.NETWORKS[p.network]
        assert p.total_channels == sum(p.widths.values())
        for v in net.variables:
            assert p.widths[v.name] % 8 == 0 and 8 <= p.widths[v.name] <= v.width
        total, _ = S.network_latency(net, p.widths, "h100-sxm", p.count)
        assert p.latency_us_predicted == pytest.approx(total * 1e6, rel=1e-9)
        if p.method != "uniform":
            u = by[(p.network, p.key[1], "uniform")]
            assert p.total_channels >= u.total_channels            # same channel count or more
            assert p.latency_us_predicted <= u.latency_us_predicted * (1 + 1e-9)
    # uniform widths: the ratio times the original, rounded to a multiple of 8
    u = by[("resnet50", "0.7", "uniform")]
    assert u.widths["layer1.0.a"] == 48 and u.widths["layer4.2.b"] == 360
    assert by[("llama-7b-mlp", "0.5", "uniform")].widths == {"ffn": 5504}


def test_csv_append_resume_and_header(tmp_path, planned):
    path = tmp_path / "gpu" / "solver_benefit.csv"
    assert B.read_rows(path) == [] and B.pending(planned, []) == planned
    for p in planned[:3]:
        B.append_row(path, p, 100.0)
    rows = B.read_rows(path)
    assert len(rows) == 3 and tuple(rows[0]) == B.HEADER
    todo = B.pending(planned, rows)
    assert len(todo) == len(planned) - 3 and all(p.key not in {B.row_key(r) for r in rows} for p in todo)
    with path.open() as f:
        assert next(csv.reader(f)) == list(B.HEADER)
    bad = tmp_path / "bad.csv"
    bad.write_text("network,keep,method\n")
    with pytest.raises(ValueError, match="header"):
        B.read_rows(bad)


def _row(net, ratio, method, ch, meas, pred):
    return {"network": net, "keep_ratio": ratio, "method": method, "total_channels": str(ch),
            "latency_us_measured": str(meas), "latency_us_predicted": str(pred)}


def test_summary_targets_and_markdown():
    rows = [_row("resnet50", "0.5", "uniform", 1000, 100.0, 90.0),
            _row("resnet50", "0.5", "solver", 1060, 100.5, 89.0),          # +6% channels, equal latency
            _row("resnet50", "0.5", "solver_min_latency", 1000, 89.0, 80.0),  # 11% faster
            _row("resnet50", "0.7", "uniform", 1400, 120.0, 110.0),
            _row("resnet50", "0.7", "solver", 1420, 119.0, 109.0)]           # misses both targets
    s = {(x["keep_ratio"], x["method"]): x for x in B.summarize(rows)}
    assert s[(0.5, "solver")]["meets_target"] and s[(0.5, "solver_min_latency")]["meets_target"]
    assert not s[(0.7, "solver")]["meets_target"]
    assert s[(0.5, "solver_min_latency")]["saving_measured"] == pytest.approx(0.11)
    assert s[(0.5, "solver_min_latency")]["saving_predicted"] == pytest.approx(1 - 80 / 90)
    md = B.summary_markdown(B.summarize(rows), "h100-sxm")
    assert md.count("| resnet50 |") == 3 and "missed" in md and "met" in md


def test_dry_run_needs_no_gpu(tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert B.main(["--dry-run", "--out", str(out), "--ratios", "0.7", "--networks", "llama-7b-mlp"]) == 0
    text = capsys.readouterr().out
    assert "4 rows planned, 0 already measured" in text and not out.exists()


class _T:
    """A stand-in tensor: remembers its shape; the operations chain_launch uses return tensors."""

    def __init__(self, *shape):
        self.shape = tuple(int(s) for s in shape)

    def to(self, **_kw):
        return self

    def __mul__(self, _other):
        return self


def test_chain_launch_runs_every_layer_at_its_widths(monkeypatch):
    import types

    calls = []
    torch = types.ModuleType("torch")
    torch.float16, torch.bfloat16, torch.float32, torch.channels_last = "f16", "bf16", "f32", "cl"
    torch.device = lambda name: name
    torch.randn = lambda *shape, **kw: _T(*shape)
    torch.empty = lambda *shape, **kw: _T(*shape)
    torch.matmul = lambda a, b, out=None: calls.append(("mm", a.shape, b.shape, out.shape))
    functional = types.ModuleType("torch.nn.functional")
    functional.conv2d = lambda x, w, b, stride, padding, dilation, groups: calls.append(
        ("conv", x.shape, w.shape, stride, padding, groups))
    nn = types.ModuleType("torch.nn")
    nn.functional = functional
    torch.nn = nn
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", nn)
    monkeypatch.setitem(sys.modules, "torch.nn.functional", functional)

    mlp = N.load_network("llama-7b-mlp")
    B.chain_launch(mlp, {"ffn": 7744}, 4096)(0)
    assert calls == [("mm", (4096, 4096), (4096, 7744), (4096, 7744))] * 2 + [
        ("mm", (4096, 7744), (7744, 4096), (4096, 4096))]
    calls.clear()
    mobile = N.load_network("mobilenetv2")
    widths = mobile.original_widths | {"features.2.hidden": 48}
    B.chain_launch(mobile, widths, 2)(0)
    assert len(calls) == len(mobile.layers)
    dw = calls[[x.name for x in mobile.layers].index("features.2.dw")]
    assert dw == ("conv", (2, 48, 112, 112), (48, 1, 3, 3), 2, 1, 48)
