"""``wavemodel solve``: the commands of issue 5 as written, their JSON, tables, plots and errors."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from wavemodel import solver as S
from wavemodel.commands import solve as cmd

try:
    from wavemodel.cli import main as cli_main
except ImportError:       # the CLI lands separately; the command module is tested on its own then
    cli_main = None


def main(argv) -> int:
    """Through the real CLI when it exists, else a local parser with the same error contract."""
    if cli_main is not None:
        return cli_main(argv)
    parser = argparse.ArgumentParser(prog="wavemodel")
    cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return cmd.run(args)
    except ValueError as e:
        print(f"wavemodel: error: {e}")
        return 2


def run_json(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


LAYER_KEYS = {"name", "width_before", "width_after", "latency_before_s", "latency_after_s"}


def test_issue_command_resnet50_keep_json(capsys):
    d = run_json(capsys, ["solve", "--network", "resnet50", "--gpu", "h100-sxm", "--batch", "32", "--dtype",
                          "fp16", "--keep", "0.7", "--json"])
    assert d["network"] == "resnet50" and d["gpu"] == "h100-sxm" and d["batch"] == 32 and d["keep"] == 0.7
    assert len(d["layers"]) == 54
    for layer in d["layers"]:
        assert set(layer) >= LAYER_KEYS
        assert layer["latency_after_s"] <= layer["latency_before_s"] * (1 + 1e-9)
        assert layer["width_after"] % 8 == 0
    t = d["totals"]
    assert t["channels_after"] >= t["channels_reference"]
    assert t["latency_after_s"] <= t["latency_reference_s"] * (1 + S.BUDGET_RTOL)
    assert t["latency_after_s"] == pytest.approx(sum(x["latency_after_s"] for x in d["layers"]), rel=1e-9)
    assert t["latency_before_s"] == pytest.approx(sum(x["latency_before_s"] for x in d["layers"]), rel=1e-9)
    # the same answer as the API
    sol = S.solve_network("resnet50", "h100-sxm", batch=32, keep=0.7)
    assert {k: v["after"] for k, v in d["widths"].items()} == sol.widths_after


def test_issue_command_llama_mlp_tokens_and_budget(capsys):
    d = run_json(capsys, ["solve", "--network", "llama-7b-mlp", "--gpu", "h100-sxm", "--tokens", "4096",
                          "--dtype", "fp16", "--keep", "0.7", "--json"])
    assert d["tokens"] == 4096 and [x["name"] for x in d["layers"]] == ["gate_proj", "up_proj", "down_proj"]
    budget_ms = d["totals"]["latency_before_s"] * 1e3 * 0.6
    b = run_json(capsys, ["solve", "--network", "llama-7b-mlp", "--tokens", "4096", "--budget-ms",
                          f"{budget_ms}", "--json"])
    assert b["mode"] == "budget" and b["totals"]["latency_after_s"] <= budget_ms * 1e-3 * (1 + 1e-12)
    assert b["layers"][0]["width_after"] == b["layers"][2]["in_width_after"]


def test_network_table_and_plot(capsys, tmp_path):
    out = tmp_path / "resnet.png"
    assert main(["solve", "--network", "resnet50", "--batch", "32", "--keep", "0.5", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layer1.0.conv2" in text and "uniform" in text and "solver" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_min_channels_and_match_channels(capsys):
    d = run_json(capsys, ["solve", "--network", "mobilenetv2", "--batch", "8", "--keep", "0.7", "--match",
                          "channels", "--json"])
    assert d["objective"] == "min_latency"
    assert d["totals"]["channels_after"] >= d["totals"]["channels_reference"]
    m = run_json(capsys, ["solve", "--network", "bert-base", "--tokens", "512", "--min-channels", "30000",
                          "--json"])
    assert m["totals"]["channels_after"] >= 30000


def test_layer_mode_gemm_and_conv(capsys, tmp_path):
    d = run_json(capsys, ["solve", "--gemm", "4096,11008,4096", "--json"])
    assert d["width"] == 11008 and d["free_width"] >= 11008
    assert d["cut_width"] is None or (d["cut_width"] < 11008 and d["cut_width"] % 8 == 0)
    out = tmp_path / "layer.png"
    assert main(["solve", "--layer", "--conv", "32,64,56,56,64,3,3", "--padding", "1", "--width", "48",
                 "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "free" in text and "cut" in text and out.exists()


def test_transformer_mode(capsys):
    d = run_json(capsys, ["solve", "--transformer", "gpt2", "--tokens", "4096", "--dims", "vocab,ffn",
                          "--json"])
    assert [a["dimension"] for a in d["advice"]] == ["vocab", "ffn"]
    for a in d["advice"]:
        for o in a["options"]:
            assert len(o["reasons"]) == len(o["changes"])
    assert main(["solve", "--transformer", "llama-7b", "--tokens", "2048", "--tp", "2"]) == 0
    assert "hidden = 4096" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["solve", "--network", "resnet50", "--batch", "32"], "exactly one of --keep"),
    (["solve", "--network", "resnet50", "--keep", "0.7"], "--batch"),
    (["solve", "--network", "resnet50", "--batch", "32", "--keep", "1.5"], "keep"),
    (["solve", "--network", "resnet51", "--batch", "32", "--keep", "0.5"], "unknown network"),
    (["solve", "--network", "resnet50", "--gemm", "1,2,3", "--keep", "0.5"], "exactly one of --network"),
    (["solve", "--gemm", "1,2"], "--gemm"),
    (["solve", "--transformer", "gpt2"], "--tokens"),
    (["solve", "--network", "resnet50", "--batch", "32", "--budget-ms", "0.001"], "budget"),
    (["solve"], "exactly one of --network"),
])
def test_errors_are_one_line_exit_2(capsys, argv, match):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = (captured.err + captured.out).strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert re.search(match, err)
