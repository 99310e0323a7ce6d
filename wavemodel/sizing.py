"""Transformer sizing: which nearby hidden / FFN / head / vocabulary sizes are free, cheaper or padded.

For each dimension the sizes within a window of the current one are predicted in one vectorised call
per GEMM of the model's linear layers (attention score GEMMs are not included). Options: ``free``
(the widest size with the same latency: capacity at no cost), ``cheaper`` (the widest size of the next
lower step) and ``padding`` (the smallest larger size with the least latency, when that is faster, e.g.
a vocabulary padded out of an unaligned tail). Each option lists the GEMMs whose prediction changes,
with tiles, waves, last-wave fill and kernel configuration before and after. The layers run back to
back, so they are predicted as a sustained run (under the board's power limit where the profile knows
it: ``wavemodel.power``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .gpus import gpu as lookup_gpu
from .networks import transformer_config
from .shapes import Gemm, check_dtype
from .solver_dp import RTOL, check_alignment, predict_many

SIZING_DIMENSIONS = ("hidden", "ffn", "heads", "vocab")


@dataclass(frozen=True)
class GemmChange:
    """How one GEMM of the model changes between the current size and an option."""

    gemm: str
    count: int                       # how many such GEMMs the model runs
    shape_before: tuple              # (m, n, k) per tensor-parallel shard
    shape_after: tuple
    tiles_before: int
    tiles_after: int
    waves_before: int
    waves_after: int
    tail_before: float               # last wave's utilisation
    tail_after: float
    config_before: str
    config_after: str
    latency_before_s: float          # one call
    latency_after_s: float

    @property
    def reason(self) -> str:
        (m0, n0, k0), (m1, n1, k1) = self.shape_before, self.shape_after
        parts = [f"{self.gemm} x{self.count} [{m0}x{n0}x{k0} -> {m1}x{n1}x{k1}]"]
        if self.tiles_before != self.tiles_after:
            parts.append(f"tiles {self.tiles_before}->{self.tiles_after}")
        if self.waves_before != self.waves_after:
            parts.append(f"waves {self.waves_before}->{self.waves_after}")
        else:
            parts.append(f"waves {self.waves_after}")
        if abs(self.tail_before - self.tail_after) > 1e-9:
            parts.append(f"last wave {self.tail_before:.0%}->{self.tail_after:.0%} full")
        if self.config_before != self.config_after:
            parts.append(f"kernel {self.config_before}->{self.config_after}")
        parts.append(f"{self.latency_before_s * 1e6:.1f}->{self.latency_after_s * 1e6:.1f} us each")
        return ": ".join(parts[:1]) + ": " + ", ".join(parts[1:])


@dataclass(frozen=True)
class SizeOption:
    kind: str                         # "free" (same latency, larger), "cheaper" (next step down),
    value: int                        # "padding" (a larger size that is faster)
    up_to: int                        # the widest size with the same latency as ``value`` (its step)
    latency_s: float
    delta_s: float                    # option minus current (negative: saves time)
    changes: tuple[GemmChange, ...]   # GEMMs whose prediction changes


@dataclass(frozen=True)
class SizeAdvice:
    dimension: str
    current: int
    latency_s: float                  # the model's linear layers at the current size
    step: int                         # the granularity of the sizes tried
    searched: tuple                   # (smallest, largest) size tried
    options: tuple[SizeOption, ...]


@dataclass(frozen=True)
class SizingReport:
    model: str
    gpu: str
    dtype: str
    tokens: int
    tp: int
    latency_s: float
    advice: tuple[SizeAdvice, ...]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for a, adv in zip(d["advice"], self.advice, strict=True):
            for o, opt in zip(a["options"], adv.options, strict=True):
                o["reasons"] = [c.reason for c in opt.changes]
        return d


def transformer_gemms(cfg: dict, tokens, tp: int = 1) -> list[tuple[str, int, Gemm]]:
    """(name, count, shape) of every linear layer GEMM of a transformer, per tensor-parallel shard.

    Any of hidden, heads, kv_heads, head_dim, ffn, vocab may be an array (the shapes broadcast).
    """
    h, heads, kv, dh = (np.asarray(cfg[k]) for k in ("hidden", "heads", "kv_heads", "head_dim"))
    ffn, vocab, layers = np.asarray(cfg["ffn"]), np.asarray(cfg["vocab"]), int(cfg["layers"])

    def shard(x):
        return -(-x // tp)

    q, kvw = heads * dh, kv * dh
    out = []
    if cfg["qkv"] == "fused":
        out.append(("qkv_proj", layers, (shard(3 * q), h)))
    else:
        out += [("q_proj", layers, (shard(q), h)), ("k_proj, v_proj", 2 * layers, (shard(kvw), h))]
    out.append(("o_proj", layers, (h, shard(q))))
    out.append(("gate_proj, up_proj" if cfg["mlp"] == "gated" else "up_proj",
                (2 if cfg["mlp"] == "gated" else 1) * layers, (shard(ffn), h)))
    out.append(("down_proj", layers, (h, shard(ffn))))
    if cfg.get("lm_head", True):
        out.append(("lm_head", 1, (shard(vocab), h)))
    return [(name, count, Gemm(m=tokens, n=n, k=k, dtype=cfg["dtype"])) for name, count, (n, k) in out]


def _sizing_grid(dim: str, cfg: dict, tp: int, alignment: int, window: float) -> tuple[np.ndarray, int, dict]:
    """Sizes to try for ``dim`` and the hyper-parameter arrays they imply."""
    cur = int(cfg[dim])
    if dim == "vocab":
        grid = np.arange(cur, cur + max(int(cur * window / 4), 4 * alignment * tp) + 1)
        return grid, 1, {"vocab": grid}
    if dim == "ffn":
        step = alignment * tp
    elif dim == "hidden":
        step = cfg["heads"] * alignment if cfg["hidden"] % (cfg["heads"] * alignment) == 0 else cfg["heads"]
    else:   # heads: whole key/value groups under GQA, whole heads per shard
        gqa = cfg["kv_heads"] != cfg["heads"]
        step = math.lcm(cfg["kv_heads"] if gqa else 1, tp)
    lo = max(step, math.ceil(cur * (1 - window) / step) * step)
    grid = np.union1d(np.arange(lo, int(cur * (1 + window)) + 1, step), [cur])
    if dim == "hidden":
        return grid, step, {"hidden": grid, "head_dim": grid // cfg["heads"]}
    if dim == "heads":
        gqa = cfg["kv_heads"] != cfg["heads"]
        return grid, step, {"heads": grid} | ({} if gqa else {"kv_heads": grid})
    return grid, step, {"ffn": grid}


def size_transformer(model, gpu="h100-sxm", tokens: int = 4096, dtype: str = "fp16", tp: int = 1,
                     dimensions=SIZING_DIMENSIONS, window: float = 0.125, alignment: int = 8,
                     backend=None) -> SizingReport:
    """Nearby sizes of a transformer's hidden size, FFN width, head count and vocabulary that are free
    (larger at the same predicted latency), cheaper (the next step down) or padded (larger and faster).

    ``model`` is a transformer preset name or a dict (hidden, heads, ffn, layers, vocab, ...). Sizes within
    ``window`` (a fraction) of the current are tried; the vocabulary only grows (padding). The latency
    is the sum over the model's linear-layer GEMMs (attention score GEMMs are not included); each
    option lists the GEMMs whose prediction changes, with tiles, waves, tail and kernel.
    """
    cfg = transformer_config(model) | {"dtype": check_dtype(dtype)}
    name = cfg.pop("name")
    gpu = lookup_gpu(gpu)
    if isinstance(tokens, bool) or not isinstance(tokens, int | np.integer) or tokens < 1:
        raise ValueError(f"tokens: must be an integer >= 1, got {tokens!r}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp: must be an integer >= 1, got {tp!r}")
    for key in ("heads", "kv_heads", "ffn"):
        if cfg[key] % tp:
            raise ValueError(f"tp: {key}={cfg[key]} does not split into {tp} shards")
    if not 0 < window < 1:
        raise ValueError(f"window: must be in (0, 1), got {window!r}")
    alignment = check_alignment(alignment)
    bad = [d for d in dimensions if d not in SIZING_DIMENSIONS]
    if bad:
        raise ValueError(f"dimensions: {bad} not in {', '.join(SIZING_DIMENSIONS)}")
    advice, base_total = [], None
    for dim in dimensions:
        grid, step, arrays = _sizing_grid(dim, cfg, tp, alignment, window)
        gemms = transformer_gemms(cfg | arrays, tokens, tp)
        preds = predict_many([g for _, _, g in gemms], gpu, backend)
        size = len(grid)
        per = [{k: np.broadcast_to(v, (size,)) if len(v) == 1 else v for k, v in p.items()} for p in preds]
        total = sum(c * p["latency_s"] for (_, c, _), p in zip(gemms, per, strict=True))
        i = int(np.flatnonzero(grid == cfg[dim])[0])
        base_total = float(total[i])
        options = [SizeOption(kind, int(grid[j]), int(grid[end]), float(total[j]), float(total[j] - total[i]),
                              _gemm_changes(gemms, per, i, j, size))
                   for kind, j, end in _grid_options(total, i, vocab=dim == "vocab",
                                                     stride=alignment * tp if dim == "vocab" else 1)]
        advice.append(SizeAdvice(dim, int(cfg[dim]), float(total[i]), step, (int(grid[0]), int(grid[-1])),
                                 tuple(options)))
    return SizingReport(model=name, gpu=gpu.name, dtype=dtype, tokens=int(tokens), tp=tp,
                        latency_s=base_total if base_total is not None else 0.0, advice=tuple(advice))


def _grid_options(total: np.ndarray, i: int, vocab: bool, stride: int = 1,
                  rtol: float = RTOL) -> list[tuple[str, int, int]]:
    """(kind, index, index of the widest size on the same step) for the options around index ``i``:
    free (the widest size with the same latency), cheaper (the widest faster size below), padding (the
    smallest larger size with the least latency above the current, when that is faster; its step is
    walked ``stride`` sizes at a time, i.e. over the sizes aligned like it)."""

    def step_end(j, stride=1):
        while j + stride < len(total) and abs(total[j + stride] - total[j]) <= rtol * total[j]:
            j += stride
        return j

    out = []
    j = step_end(i)
    if j > i:
        out.append(("free", j, j))
    if not vocab:
        below = np.flatnonzero(total[:i] < total[i] * (1 - rtol))
        if below.size:
            out.append(("cheaper", int(below[-1]), int(below[-1])))
    if i + 1 < len(total):
        best = total[i + 1:].min()
        if best < total[i] * (1 - rtol):
            k = i + 1 + int(np.flatnonzero(total[i + 1:] <= best * (1 + rtol))[0])
            out.append(("padding", k, step_end(k, stride)))
    return out


def _gemm_changes(gemms, per, i: int, j: int, size: int) -> tuple[GemmChange, ...]:
    out = []
    for (name, count, g), p in zip(gemms, per, strict=True):
        dims = [np.broadcast_to(np.asarray(getattr(g, f)), (size,)) for f in ("m", "n", "k")]
        before, after = tuple(int(d[i]) for d in dims), tuple(int(d[j]) for d in dims)
        lat0, lat1 = float(p["latency_s"][i]), float(p["latency_s"][j])
        if before == after and lat0 == lat1:
            continue
        cfg0, cfg1 = p["config"][i], p["config"][j]
        out.append(GemmChange(
            gemm=name, count=count, shape_before=before, shape_after=after,
            tiles_before=int(p["tiles"][i]), tiles_after=int(p["tiles"][j]), waves_before=int(p["waves"][i]),
            waves_after=int(p["waves"][j]), tail_before=float(p["tail_utilization"][i]),
            tail_after=float(p["tail_utilization"][j]), config_before=getattr(cfg0, "name", str(cfg0)),
            config_after=getattr(cfg1, "name", str(cfg1)), latency_before_s=lat0, latency_after_s=lat1))
    return tuple(out)
