"""The ``wavemodel`` command line: subcommands, --json output, the PNG, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import cli, symbolic
from wavemodel.commands import parse_range, resolve_backend

ROOT = Path(__file__).resolve().parents[1]
# catalogue configurations, chosen by what the tests need (the catalogue is built from measured data)
_FP16 = __import__("wavemodel.configs", fromlist=["x"]).library_configs("cublas", wm.gpu("h100"), "fp16")
CONFIG = next(c.name for c in _FP16 if c.cluster_m == c.cluster_n == c.split_k == 1 and c.tile_m >= 64)
TOO_BIG_FOR_T4 = next(c.name for c in _FP16 if c.smem_per_block_bytes > 65536)


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(argv, capsys):
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def subprocess_cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "wavemodel.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def ceil_div(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------------
# predict

def test_predict_gemm_json_hand_computed(capsys):
    cfg = resolve_backend(CONFIG)
    assert isinstance(cfg, wm.KernelConfig) and cfg.cluster_m == cfg.cluster_n == cfg.split_k == 1
    doc = run_json(["predict", "--m", "4096", "--n", "4096", "--k", "4096", "--backend", CONFIG], capsys)
    tiles = ceil_div(4096, cfg.tile_m) * ceil_div(4096, cfg.tile_n)       # 32 x 32 = 1024 for 128x128
    bps = cfg.occupancy(wm.gpu("h100")).blocks_per_sm
    waves = ceil_div(tiles, 132 * bps)
    assert doc["tiles"] == tiles and doc["waves"] == waves and doc["blocks_per_sm"] == bps
    assert doc["wave_size"] == 132 * bps
    assert doc["tail_utilization"] == pytest.approx((tiles - (waves - 1) * 132 * bps) / (132 * bps))
    assert doc["flops"] == 2.0 * 4096**3
    assert doc["config"]["name"] == CONFIG and doc["config"]["tile_m"] == cfg.tile_m
    assert doc["gpu"] == "h100-sxm" and doc["shape"] == {"kind": "gemm", "m": 4096, "n": 4096, "k": 4096,
                                                          "batch": 1, "dtype": "fp16"}
    assert doc["bound"] in ("compute", "memory", "latency")
    assert doc["latency_s"] > max(doc["compute_s"], doc["memory_s"])
    assert doc["achieved_flops_per_s"] == pytest.approx(doc["flops"] / doc["latency_s"])


def test_predict_json_matches_the_library(capsys):
    doc = run_json(["predict", "--m", "1000", "--n", "3000", "--k", "512", "--batch", "3", "--dtype", "bf16",
                    "--gpu", "a100"], capsys)
    p = wm.predict_latency(wm.Gemm(m=1000, n=3000, k=512, batch=3, dtype="bf16"), wm.gpu("a100-40gb"))
    assert doc["latency_s"] == p.latency_s and doc["config"]["name"] == p.config.name
    assert doc["gpu"] == "a100-40gb" and doc["backend"] == "cublas"


def test_predict_conv_hand_computed(capsys):
    # implicit GEMM of a 3x3 conv, padding 1: M = 32*56*56 = 100352, N = 64, K = 64*3*3 = 576
    cfg = resolve_backend(CONFIG)
    doc = run_json(["predict", "--conv", "32,64,56,56,64,3,3", "--padding", "1", "--backend", CONFIG], capsys)
    tiles = ceil_div(100352, cfg.tile_m) * ceil_div(64, cfg.tile_n)
    assert doc["tiles"] == tiles
    assert doc["flops"] == 2.0 * 100352 * 64 * 576
    assert doc["shape"]["kind"] == "conv2d" and doc["shape"]["padding"] == 1


def test_predict_table(capsys):
    code, out, err = run(["predict", "--m", "4096", "--n", "4096", "--k", "4096"], capsys)
    assert code == 0 and err == ""
    p = wm.predict_latency((4096, 4096, 4096), wm.gpu("h100"))
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["latency"] == f"{p.latency_s * 1e6:.2f} us"
    assert rows["waves"].startswith(f"{p.waves} (wave = {p.wave_size} tiles")
    assert rows["config"].startswith(p.config.name)
    code, out, _ = run(["predict", "--conv", "8,64,28,28,128,3,3", "--stride", "2", "--padding", "1"], capsys)
    assert code == 0 and "implicit GEMM" in out and "m=1568" in out   # 8 * 14 * 14 output pixels


def test_predict_names_the_family_a_1x1_conv_takes(capsys):
    # our conv kernels fit their 1x1 filters as a family of their own; the table says which one ran
    for filt, family in (("1,1", "conv_f16_128x64_1x1"), ("3,3", None)):
        code, out, _ = run(["predict", "--conv", f"8,64,28,28,128,{filt}", "--backend", "conv_f16_128x64"],
                           capsys)
        rows = dict(line.split(None, 1) for line in out.splitlines())
        assert code == 0 and rows["config"].startswith("conv_f16_128x64: tile 128x64x32")
        assert rows["config"].endswith(f"parameters of family {family} (1x1 filter)") if family else (
            "family" not in rows["config"])
        code, out, _ = run(["predict", "--conv", f"8,64,28,28,128,{filt}", "--backend", "conv_f16_128x64",
                            "--json"], capsys)
        assert json.loads(out)["config"]["family"] == (family or "conv_f16_128x64")


# ---------------------------------------------------------------------------------------------------
# gpus

def test_gpus_table_and_json(capsys):
    code, out, _ = run(["gpus"], capsys)
    names = sorted(wm.gpus.catalogue())
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + len(names)
    assert sorted(line.split()[0] for line in lines[2:]) == names
    h100 = [line for line in lines if line.startswith("h100-sxm ")][0]
    assert h100.split()[1] == "132"
    doc = run_json(["gpus"], capsys)
    assert sorted(g["name"] for g in doc) == names
    assert run_json(["gpus", "h100", "a100"], capsys)[0]["sm_count"] == 132
    assert [g["name"] for g in run_json(["gpus", "h100", "a100"], capsys)] == ["h100-sxm", "a100-40gb"]


# ---------------------------------------------------------------------------------------------------
# staircase

def test_staircase_json_points_and_steps(capsys):
    cfg = resolve_backend(CONFIG)
    doc = run_json(["staircase", "--dim", "n", "--m", "4096", "--n", "256:4352:64", "--k", "4096",
                    "--backend", CONFIG], capsys)
    x = np.arange(256, 4353, 64)
    assert [pt["n"] for pt in doc["points"]] == x.tolist()
    bps = cfg.occupancy(wm.gpu("h100")).blocks_per_sm
    tiles = ceil_div(4096, cfg.tile_m) * ceil_div(x, cfg.tile_n)
    assert [pt["tiles"] for pt in doc["points"]] == tiles.tolist()
    assert [pt["waves"] for pt in doc["points"]] == ceil_div(tiles, 132 * bps).tolist()
    for pt in doc["points"]:
        assert pt["latency_us"] == pytest.approx(pt["latency_s"] * 1e6)
        assert pt["achieved_tflops"] == pytest.approx(2 * 4096 * pt["n"] * 4096 / pt["latency_s"] / 1e12)
    assert doc["steps"] == symbolic.step_positions((4096, 1, 4096), cfg, "h100", "n", 256, 4352)
    assert doc["steps"] and all((s - 1) % cfg.tile_n == 0 for s in doc["steps"])
    assert doc["fixed"] == {"m": 4096, "k": 4096, "batch": 1, "dtype": "fp16"} and doc["out"] is None


def test_staircase_infers_the_dimension_and_writes_png(capsys, tmp_path):
    out_png = tmp_path / "s.png"
    code, out, err = run(["staircase", "--m", "128:2048:128", "--n", "1024", "--k", "1024",
                          "--out", str(out_png)], capsys)
    assert code == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000
    assert f"wrote     {out_png}" in out
    assert "points    16 (m = 128..2048)" in out


def test_readme_command_works_as_written(tmp_path):
    """The README's first command after `pip install . &&`, run with this checkout, writes its PNG."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^pip install \. && wavemodel (.+)$", readme, flags=re.M)
    if match is None:
        pytest.skip("README has no `pip install . && wavemodel ...` line")
    args = shlex.split(match.group(1))
    result = subprocess_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outs = [args[i + 1] for i, a in enumerate(args) if a == "--out"]
    assert outs, "the README command should write a plot"
    png = tmp_path / outs[0]
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------------
# errors: one line on stderr, exit status 2, nothing on stdout

BAD = [
    (["predict", "--m", "0", "--n", "1", "--k", "1"], "m: must be an integer >= 1"),
    (["predict", "--m", "x", "--n", "1", "--k", "1"], "--m"),
    (["predict", "--m", "1", "--n", "1"], "--k"),
    (["predict", "--m", "1", "--n", "1", "--k", "1", "--gpu", "h1000"], "unknown GPU 'h1000'"),
    (["predict", "--m", "1", "--n", "1", "--k", "1", "--dtype", "fp64"], "dtype"),
    (["predict", "--m", "1", "--n", "1", "--k", "1", "--backend", "nope"], "backend"),
    (["predict", "--m", "8", "--n", "8", "--k", "8", "--backend", TOO_BIG_FOR_T4, "--gpu", "t4"],
     "cannot run on"),
    (["predict", "--conv", "1,2,3"], "--conv"),
    (["predict", "--conv", "1,3,8,8,8,3,3", "--m", "4"], "--conv"),
    (["predict", "--conv", "1,3,2,2,8,5,5"], "larger than the padded input"),
    (["staircase", "--m", "1", "--n", "5:1", "--k", "3"], "--n"),
    (["staircase", "--m", "1", "--n", "a:b", "--k", "3"], "--n"),
    (["staircase", "--m", "1", "--n", "1:9:0", "--k", "3"], "--n"),
    (["staircase", "--m", "1", "--n", "1:2:3:4", "--k", "3"], "--n"),
    (["staircase", "--m", "1:4", "--n", "1:9", "--k", "3"], "exactly one"),
    (["staircase", "--m", "1", "--n", "9", "--k", "3"], "exactly one"),
    (["staircase", "--dim", "q", "--m", "1", "--n", "1:9", "--k", "3"], "--dim"),
    (["staircase", "--dim", "m", "--m", "1", "--n", "1:9", "--k", "3"], "--dim m"),
    (["staircase", "--m", "1", "--n", "1:9", "--k", "3", "--out", "x.nosuchformat"], "nosuchformat"),
    (["staircase", "--m", "1", "--n", "1:9"], "--k"),
    (["gpus", "nope-gpu"], "unknown GPU"),
    ([], "COMMAND"),
    (["frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[" ".join(a) or "(none)" for a, _ in BAD])
def test_bad_input_prints_one_line_and_exits_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("wavemodel: error: ")
    assert needle in err
    assert "Traceback" not in err


def test_unwritable_output_is_one_line(capsys, tmp_path):
    code, out, err = run(["staircase", "--m", "64", "--n", "1:9", "--k", "64",
                          "--out", str(tmp_path / "no" / "such" / "dir.png")], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("wavemodel: error: ")


def test_subprocess_errors_have_no_traceback(tmp_path):
    result = subprocess_cli(["predict", "--m", "-4", "--n", "1", "--k", "1"], cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["wavemodel: error: m: must be an integer >= 1, got -4"]
    result = subprocess_cli(["predict", "--m", "64", "--n", "64", "--k", "64", "--json"], cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["tiles"] >= 1


def test_help_and_version(capsys):
    assert run(["--help"], capsys)[0] == 0
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and wm.__version__ in out
    code, out, _ = run(["staircase", "--help"], capsys)
    assert code == 0 and "lo:hi" in out


# ---------------------------------------------------------------------------------------------------
# the command contract: modules in wavemodel/commands are found without touching cli.py

def test_commands_are_discovered(tmp_path, monkeypatch, capsys):
    from wavemodel import commands

    (tmp_path / "hello_cmd.py").write_text(
        "def add_parser(sub):\n"
        "    p = sub.add_parser('hello-cmd')\n"
        "    p.add_argument('--who', default='world')\n"
        "def run(args):\n"
        "    print('hello', args.who)\n"
        "    return 3\n")
    (tmp_path / "broken_cmd.py").write_text("raise RuntimeError('half-written')\n")
    (tmp_path / "_private.py").write_text("raise RuntimeError('not a command')\n")
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])
    for name in ("hello_cmd", "broken_cmd"):
        monkeypatch.delitem(sys.modules, f"wavemodel.commands.{name}", raising=False)
    code, out, err = run(["hello-cmd", "--who", "waves"], capsys)
    assert code == 3 and out == "hello waves\n"
    assert "command 'broken_cmd' not loaded: half-written" in err and "_private" not in err
    assert {"predict", "gpus", "staircase"} <= set(cli.command_modules())


def test_parse_range():
    np.testing.assert_array_equal(parse_range("256:8192:64", "--n"), np.arange(256, 8193, 64))
    np.testing.assert_array_equal(parse_range("1:5", "--n"), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(parse_range("10:20:7", "--n"), [10, 17])
    with pytest.raises(ValueError, match="at most"):
        parse_range("1:100000000", "--n")


def test_predict_sustained_takes_the_power_floor(capsys):
    argv = ["predict", "--m", "4096", "--n", "5504", "--k", "4096"]
    alone = run_json(argv, capsys)
    doc = run_json([*argv, "--sustained"], capsys)
    p = wm.predict_latency(wm.Gemm(4096, 5504, 4096), wm.gpu("h100-sxm"), sustained=True)
    assert doc["sustained"] is True and alone["sustained"] is False
    assert doc["latency_s"] == p.latency_s >= alone["latency_s"] and doc["bound"] == p.bound
