"""The width solver's engine: latency tables over candidate widths and the searches over them.

``build_problem`` turns a network into unary and pairwise latency tables along its width chains (one
``predict_latency`` call per layer kind, identical layers evaluated once; an entry slower than the
layer's original latency is forbidden, but for the reference widths). ``solve_exact`` runs a DP
along each chain over (width, channels kept) and merges the chains with a min-plus knapsack: optimal
over the candidate widths. ``solve_lagrangian`` maximises ``channels - mu * latency`` by Viterbi per
chain, bisects ``mu`` and spends what is left greedily, returning certified bounds. ``widen`` moves
every width to the edge of its step. ``solver.solve_network`` is the public entry point; see its
module docstring for the guarantees.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .gpus import GPUSpec
from .latency import predict_latency
from .networks import Layer, Network, layer_shape, segments
from .shapes import Gemm

RTOL = 1e-9                  # latencies within this relative tolerance are "the same"
BUDGET_RTOL = 1e-12          # the budget holds to this relative tolerance (floating-point summation order)
EXACT_WORK_LIMIT = 4e8       # exact DP element operations (about a second) before "auto" goes Lagrangian
_GEMM_FIELDS = ("m", "n", "k", "batch")
_CONV_FIELDS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding", "dilation", "groups")



# ============================================================================ batched prediction


def predict_many(shapes, gpu: GPUSpec, backend=None, sustained: bool = True) -> list[dict]:
    """Predict many (array) shapes with one ``predict_latency`` call per (kind, dtype) group.

    The shapes are a network's layers, which run back to back: ``sustained`` (default) predicts them
    as a sustained run, under the board's power limit where the profile knows it (``wavemodel.power``).

    Returns per shape a dict of flat arrays: latency_s, waves, tiles, tail_utilization, config, bound.
    """
    out: list[dict | None] = [None] * len(shapes)
    groups: dict[tuple, list[int]] = {}
    for i, sh in enumerate(shapes):
        groups.setdefault((type(sh), sh.dtype), []).append(i)
    for (kind, dtype), idx in groups.items():
        names = _GEMM_FIELDS if kind is Gemm else _CONV_FIELDS
        sizes, cols = [], {f: [] for f in names}
        for i in idx:
            arrays = np.broadcast_arrays(*[np.asarray(getattr(shapes[i], f)) for f in names])
            sizes.append(arrays[0].size)
            for f, a in zip(names, arrays, strict=True):
                cols[f].append(a.ravel())
        big = kind(**{f: np.concatenate(cols[f]) for f in names}, dtype=dtype)
        p = predict_latency(big, gpu, backend=backend, sustained=sustained)
        fields = {k: np.atleast_1d(np.asarray(getattr(p, k))) for k in
                  ("latency_s", "waves", "tiles", "tail_utilization", "config", "bound")}
        start = 0
        for i, size in zip(idx, sizes, strict=True):
            out[i] = {k: v[start:start + size] for k, v in fields.items()}
            start += size
    return out


def check_alignment(alignment) -> int:
    if isinstance(alignment, bool) or not isinstance(alignment, int | np.integer) or alignment < 1:
        raise ValueError(f"alignment: must be an integer >= 1, got {alignment!r}")
    return int(alignment)


# ============================================================================ tables


def width_step(var, alignment: int, tp: int = 1) -> int:
    """The granularity of a width variable's candidates: alignment, whole units, whole aligned shards."""
    step = math.lcm(var.unit, alignment)
    if var.sharded and tp > 1:
        step = math.lcm(step, tp * math.lcm(alignment, var.shard_unit))
    return step


def candidate_widths(var, alignment: int, tp: int = 1, min_width: float = 1, max_width: float | None = None,
                     include=()) -> np.ndarray:
    """Multiples of ``width_step`` in [min_width, max_width] (default: up to the original), plus the
    original when it is in range and not a multiple, plus ``include`` (e.g. a reference width)."""
    step = width_step(var, alignment, tp)
    hi = var.width if max_width is None else min(var.width, max_width)
    lo = max(1, math.ceil(min_width / step - 1e-9))
    c = np.arange(lo, int(hi // step) + 1, dtype=np.int64) * step
    extra = [w for w in (var.width, *include) if min_width <= w <= hi or w in include]
    c = np.union1d(c, np.asarray(extra, dtype=np.int64))
    if c.size == 0:
        c = np.asarray([var.width], dtype=np.int64)
    return c


@dataclass(frozen=True, eq=False)
class Problem:
    names: tuple[str, ...]                 # width variables
    cands: dict                            # name -> candidate widths (ascending)
    paths: tuple[tuple[str, ...], ...]
    unary: dict                            # name -> latency over cands (inf: a layer would get slower)
    pair: dict                             # (a, b) consecutive on a path -> table over (cands[a], cands[b])
    fixed_s: float                         # layers with no prunable width
    layer_tables: tuple                    # per layer: (axes, table), table over the axes' candidates
    original_s: tuple                      # per layer original latency
    path_keys: dict                        # path -> content key (repeated blocks share one)


def _layer_grid(layer: Layer, cands: dict):
    """The variables a layer's latency depends on, in table axis order, and its width grids."""
    a, b = layer.in_var, layer.out_var
    if layer.depthwise or a == b:
        a = None
    axes = tuple(v for v in (a, b) if v is not None)
    grids = np.meshgrid(*[cands[v] for v in axes], indexing="ij") if axes else []
    kw = {}
    if a is not None:
        kw["in_width"] = grids[0]
    if b is not None:
        kw["out_width"] = grids[-1]
    if layer.depthwise and layer.in_var is not None:
        kw = {"in_width": grids[0]}
    return axes, kw


def build_problem(net: Network, gpu: GPUSpec, count: int, dtype: str, alignment: int,
                  bounds: dict | None = None, include: dict | None = None, backend=None) -> Problem:
    """Latency tables over the candidate widths: ``bounds`` maps a variable to its (min, max) width,
    ``include`` to a width that must be a candidate."""
    bounds, include = bounds or {}, include or {}
    cands = {v.name: candidate_widths(v, alignment, net.tp, *bounds.get(v.name, (1, None)),
                                      include=(include[v.name],) if v.name in include else ())
             for v in net.variables}
    shapes, axes_of, keys, uniq = [], [], [], {}
    for layer in net.layers:
        axes, kw = _layer_grid(layer, cands)
        geom = dataclasses.replace(layer, name="", in_var=layer.in_var and "i", out_var=layer.out_var and "o")
        key = (geom, tuple(cands[v].tobytes() for v in axes))
        if key not in uniq:
            uniq[key] = len(shapes)
            shapes.append(layer_shape(layer, count, dtype, tp=net.tp, **kw))
            shapes.append(layer_shape(layer, count, dtype, tp=net.tp))           # the original
        axes_of.append(axes)
        keys.append(uniq[key])
    preds = predict_many(shapes, gpu, backend)
    unary = {v: np.zeros(len(c)) for v, c in cands.items()}
    pair: dict = {}
    fixed, tables, originals = 0.0, [], []
    for axes, i in zip(axes_of, keys, strict=True):
        orig = float(preds[i + 1]["latency_s"][0])
        table = preds[i]["latency_s"].reshape([len(cands[v]) for v in axes]) if axes else np.float64(orig)
        # never slower than the original, but for the reference widths (``include``): keep and
        # reference modes must be able to return them, even where an alignment term makes a narrower
        # width slower (C's rows off 32-byte sectors)
        allowed = table <= orig * (1 + RTOL)
        if axes and all(v in include for v in axes):
            allowed[np.ix_(*[cands[v] == include[v] for v in axes])] = True
        table = np.where(allowed, table, np.inf)
        tables.append((axes, table))
        originals.append(orig)
        if not axes:
            fixed += orig
        elif len(axes) == 1:
            unary[axes[0]] = unary[axes[0]] + table
        else:
            pair[axes] = pair[axes] + table if axes in pair else table
    paths = segments(net)
    oriented = {}
    for path in paths:
        for a, b in zip(path, path[1:], strict=False):
            t = pair.get((a, b))
            oriented[(a, b)] = t if t is not None else pair[(b, a)].T
    keys = {p: tuple(x.tobytes() for v in p for x in (cands[v], unary[v]))
            + tuple(oriented[(a, b)].tobytes() for a, b in zip(p, p[1:], strict=False)) for p in paths}
    return Problem(names=tuple(cands), cands=cands, paths=paths, unary=unary, pair=oriented, fixed_s=fixed,
                    layer_tables=tuple(tables), original_s=tuple(originals), path_keys=keys)


def total_latency(pb: Problem, idx: dict) -> float:
    total = pb.fixed_s
    for v in pb.names:
        total += pb.unary[v][idx[v]]
    for (a, b), t in pb.pair.items():
        total += t[idx[a], idx[b]]
    return float(total)


def _channels(pb: Problem, idx: dict) -> int:
    return int(sum(int(pb.cands[v][idx[v]]) for v in pb.names))


# ---------------------------------------------------------------------------- exact: DP + knapsack


def exact_work(pb: Problem, unit: int) -> float:
    work, total_units = 0.0, sum(int(pb.cands[v][-1]) // unit for v in pb.names)
    for path in pb.paths:
        c = int(pb.cands[path[0]][-1]) // unit
        for a, b in zip(path, path[1:], strict=False):
            work += len(pb.cands[a]) * (c + 1) * len(pb.cands[b])
            c += int(pb.cands[b][-1]) // unit
        work += (c + 1) * total_units          # the knapsack merge
    return work


def _path_frontier(pb: Problem, path, unit: int):
    """Least latency of ``path`` for every channel count (in ``unit``s) with backpointers."""
    units = [pb.cands[v] // unit for v in path]
    w0 = len(units[0])
    dp = np.full((w0, int(units[0].max()) + 1), np.inf)
    dp[np.arange(w0), units[0]] = pb.unary[path[0]]
    backs = []
    for j in range(1, len(path)):
        table = pb.pair[(path[j - 1], path[j])]                 # (W_prev, W_j)
        wj, c = len(units[j]), dp.shape[1]
        m = np.empty((c, wj))
        arg = np.empty((c, wj), dtype=np.int64)
        for k in range(wj):                                     # (W_prev, C) per next width
            tot = dp + table[:, k][:, None]
            arg[:, k] = tot.argmin(0)
            m[:, k] = tot[arg[:, k], np.arange(c)]
        nxt = np.full((wj, c + int(units[j].max())), np.inf)
        cols = np.arange(c)[None, :] + units[j][:, None]
        nxt[np.arange(wj)[:, None], cols] = m.T + pb.unary[path[j]][:, None]
        backs.append(arg)
        dp = nxt
    return dp.min(0), dp.argmin(0), backs, units


def _path_backtrack(frontier, c: int) -> list[int]:
    _, last, backs, units = frontier
    j = int(last[c])
    idx = [j]
    for step in range(len(backs), 0, -1):
        c -= int(units[step][j])
        j = int(backs[step - 1][c, j])
        idx.append(j)
    return idx[::-1]


def solve_exact(pb: Problem, budget_s: float | None, min_channels: int | None, unit: int) -> dict:
    cache, fronts = {}, []
    for path in pb.paths:
        key = pb.path_keys[path]
        if key not in cache:
            cache[key] = _path_frontier(pb, path, unit)
        fronts.append(cache[key])
    total = np.zeros(1)
    choices = []
    for f in fronts:
        lat = f[0]
        pts = np.flatnonzero(np.isfinite(lat))
        new = np.full(len(total) + len(lat) - 1, np.inf)
        ch = np.full(len(new), -1, dtype=np.int64)
        for c in pts:
            cand = total + lat[c]
            seg = new[c:c + len(total)]
            better = cand < seg
            seg[better] = cand[better]
            ch[c:c + len(total)][better] = c
        choices.append(ch)
        total = new
    total = total + pb.fixed_s
    feasible = np.isfinite(total)
    if budget_s is not None:
        ok = np.flatnonzero(feasible & (total <= budget_s))
        if ok.size == 0:
            raise infeasible(budget_s, float(total[feasible].min()))
        c = int(ok[-1])
    else:
        need = -(-min_channels // unit)
        ok = np.flatnonzero(feasible & (np.arange(len(total)) >= need))
        if ok.size == 0:
            raise ValueError(f"min_channels: {min_channels} is more than the network has "
                             f"({int(np.flatnonzero(feasible)[-1]) * unit})")
        best = total[ok].min()
        c = int(ok[total[ok] <= best][-1])
    idx = {}
    for path, f, ch in zip(reversed(pb.paths), reversed(fronts), reversed(choices), strict=True):
        cs = int(ch[c])
        for v, i in zip(path, _path_backtrack(f, cs), strict=True):
            idx[v] = i
        c -= cs
    return idx


def infeasible(budget_s: float, least_s: float) -> ValueError:
    return ValueError(f"budget: {budget_s * 1e3:.4g} ms is below the least predicted latency reachable with "
                      f"these candidate widths, {least_s * 1e3:.4g} ms")


# ---------------------------------------------------------------------------- Lagrangian


def _viterbi(pb: Problem, path, mu: float):
    """Maximise channels - mu * latency along ``path``; returns (indices by position, channels, latency)."""
    score = pb.cands[path[0]] - mu * pb.unary[path[0]]
    backs = []
    for a, b in zip(path, path[1:], strict=False):
        s = score[:, None] - mu * pb.pair[(a, b)]
        arg = s.argmax(0)
        backs.append(arg)
        score = s[arg, np.arange(s.shape[1])] + pb.cands[b] - mu * pb.unary[b]
    j = int(score.argmax())
    idx = [j]
    for arg in reversed(backs):
        j = int(arg[j])
        idx.append(j)
    idx = idx[::-1]
    ch = sum(int(pb.cands[v][i]) for v, i in zip(path, idx, strict=True))
    lat = sum(float(pb.unary[v][i]) for v, i in zip(path, idx, strict=True)) + sum(
        float(pb.pair[(a, b)][i, j]) for a, b, i, j in zip(path, path[1:], idx, idx[1:], strict=False))
    return idx, ch, lat


def _relaxed(pb: Problem, mu: float, cache: dict):
    """The Lagrangian maximiser at ``mu`` over all paths: (indices, channels, latency)."""
    idx, ch, lat = {}, 0, pb.fixed_s
    for path in pb.paths:
        key = (mu, pb.path_keys[path])
        if key not in cache:
            cache[key] = _viterbi(pb, path, mu)
        sub, c, t = cache[key]
        idx.update(zip(path, sub, strict=True))
        ch += c
        lat += t
    return idx, ch, lat


_TIE = 1e-6   # channels per second of latency: among equal channel counts prefer the faster choice
_MU_MAX = 1e30


def solve_lagrangian(pb: Problem, budget_s: float | None, min_channels: int | None):
    """Bisection on the multiplier ``mu`` (channels per second); returns (indices, upper, lower bound).

    Channels and latency of the relaxed optimum both fall as ``mu`` grows. Each evaluated ``mu``
    certifies ``OPT_channels <= C(x) - mu (L(x) - budget)`` and ``OPT_latency >= L(x) - (C(x) - N) / mu``.
    """
    cache: dict = {}
    evaluated = []

    def at(mu):
        r = _relaxed(pb, mu + _TIE, cache)
        evaluated.append((mu + _TIE, r))
        return r

    def ok(r):
        return r[2] <= budget_s if budget_s is not None else r[1] >= min_channels

    r0 = at(0.0)
    if budget_s is not None and ok(r0):
        return widen(pb, dict(r0[0])), r0[1], None
    if min_channels is not None and not ok(r0):
        raise ValueError(f"min_channels: {min_channels} is more than the network has ({r0[1]})")
    # bracket: lo fails / hi passes (budget); lo passes / hi fails (channels)
    lo, hi = 0.0, 1.0
    while ok(at(hi)) == (min_channels is not None):
        lo, hi = hi, hi * 4.0
        if hi > _MU_MAX:
            if budget_s is not None:
                raise infeasible(budget_s, at(_MU_MAX)[2])
            break
    for _ in range(80):
        if hi - lo <= 1e-9 * hi:
            break
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 16
        good = ok(at(mid))
        if good == (budget_s is not None):
            hi = mid
        else:
            lo = mid
    passing = lo if min_channels is not None else hi
    best = at(passing)
    if budget_s is not None:
        idx = widen(pb, _greedy_fill(pb, dict(best[0]), budget_s))
        upper = min(r[1] - m * (r[2] - budget_s) for m, r in evaluated)
        return idx, int(math.floor(upper + 1e-6)), None
    idx = widen(pb, _greedy_trim(pb, dict(best[0]), min_channels))
    lower = max(r[2] - (r[1] - min_channels) / m for m, r in evaluated)
    return idx, None, lower


def _delta(pb: Problem, idx: dict, v: str, neighbours: dict):
    """Latency of every candidate of ``v`` minus the current, other widths fixed."""
    lat = pb.unary[v].copy()
    for (a, b), t in neighbours[v]:
        lat = lat + (t[:, idx[b]] if a == v else t[idx[a], :])
    return lat - lat[idx[v]]


def _neighbours(pb: Problem) -> dict:
    nb = {v: [] for v in pb.names}
    for (a, b), t in pb.pair.items():
        nb[a].append(((a, b), t))
        nb[b].append(((a, b), t))
    return nb


def _greedy_fill(pb: Problem, idx: dict, budget_s: float) -> dict:
    """Spend leftover budget: repeatedly take the widening with the most channels per second."""
    nb = _neighbours(pb)
    slack = budget_s - total_latency(pb, idx)
    while True:
        best = None
        for v in pb.names:
            d = _delta(pb, idx, v, nb)
            gain = pb.cands[v] - pb.cands[v][idx[v]]
            okm = (gain > 0) & np.isfinite(d) & (d <= slack)
            if not okm.any():
                continue
            ratio = np.where(okm, gain / np.where(okm, np.maximum(d, 1e-15), 1), -np.inf)
            j = int(ratio.argmax())
            if best is None or ratio[j] > best[0]:
                best = (ratio[j], v, j, d[j])
        if best is None:
            return idx
        _, v, j, d = best
        idx[v] = j
        slack -= d


def _greedy_trim(pb: Problem, idx: dict, min_channels: int) -> dict:
    """Shed latency while keeping ``min_channels``: the narrowing that saves most per channel lost."""
    nb = _neighbours(pb)
    spare = _channels(pb, idx) - min_channels
    while True:
        best = None
        for v in pb.names:
            d = _delta(pb, idx, v, nb)
            loss = pb.cands[v][idx[v]] - pb.cands[v]
            okm = (loss > 0) & (loss <= spare) & np.isfinite(d) & (d < 0)
            if not okm.any():
                continue
            ratio = np.where(okm, -d / np.where(okm, loss, 1), -np.inf)
            j = int(ratio.argmax())
            if best is None or ratio[j] > best[0]:
                best = (ratio[j], v, j, loss[j])
        if best is None:
            return idx
        _, v, j, loss = best
        idx[v] = j
        spare -= loss


def widen(pb: Problem, idx: dict) -> dict:
    """Move every width up its step: the widest candidate that does not raise the total latency."""
    nb = _neighbours(pb)
    changed = True
    while changed:
        changed = False
        for v in pb.names:
            d = _delta(pb, idx, v, nb)
            up = np.flatnonzero((np.arange(len(d)) > idx[v]) & np.isfinite(d) & (d <= 0))
            if up.size:
                idx[v] = int(up[-1])
                changed = True
    return idx
