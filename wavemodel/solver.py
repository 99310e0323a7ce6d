"""Width solver: which layer widths are free, which cuts save time, and per-network width choices.

Three modes, all on the model's predicted latency (``predict_latency``, library backends by default):

* **Layer** (``solve_layer``, ``layer_staircase``): a layer's latency against its output width (GEMM
  ``n``, conv ``k``) is a staircase. For width ``w`` we report the step it is on, the widest width with
  the same latency (free capacity) and the widest width of the next lower step (the cut that saves
  time). Steps are read on the aligned grid (multiples of ``alignment``, plus ``w``): walking up from
  ``w`` the step goes on while the latency stays within ``rtol`` of ``latency(w)`` or below; walking
  down, the cut is the first aligned width strictly faster than ``w``. One ``predict_latency`` call
  covers every width 1..``max_width``; the queries are answered for all widths at once.

* **Network** (``solve_network``): maximise the total kept channels (the sum of the prunable widths)
  subject to the network's predicted latency <= a budget (``budget_s``; ``keep``: the budget is the
  latency of the uniform keep-ratio network, widths rounded to the alignment), or minimise latency
  subject to keeping at least ``min_channels``. Candidate widths are multiples of ``alignment`` (and of
  whole heads / tensor-parallel shards) up to the original, plus the original itself. A layer's latency
  depends on its input and output widths only, and the links are chains (``networks.segments``), so
  the latency is a sum of unary and pairwise tables along disjoint paths. Any entry slower than the
  layer's original latency is forbidden, so **no layer is ever predicted slower than it was**.

  Optimality. ``method="exact"``: a DP along each path over (width, channels kept so far) gives each
  path's exact frontier (least latency for every channel count, channels counted in units of the gcd
  of the candidate widths); a min-plus knapsack merges the paths. The result is optimal over the
  candidate set. ``method="lagrangian"`` (for networks where that table is too large): Viterbi over each
  path maximises ``channels - mu * latency``; bisection on ``mu`` finds the cheapest multiplier within
  budget, then a greedy pass spends the leftover budget. Every multiplier evaluated gives a certified
  bound (Lagrangian duality): ``channels_upper_bound`` (or ``latency_lower_bound_s``) is reported, so
  the gap to the optimum is known for every answer. ``method="auto"`` picks exact when its tables fit
  (``EXACT_WORK_LIMIT`` element operations). Finally every width is widened while the total latency
  does not grow, so each width sits at a step edge.

* **Transformer sizing** (``size_transformer``): for the hidden size, FFN width, head count and
  vocabulary, the nearby sizes that are free (same latency, more capacity), cheaper (the next step
  down) or padded (a larger size that is faster, e.g. a vocabulary without a tail), each with the
  per-GEMM reason (tiles, waves, tail, kernel configuration).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .gpus import GPUSpec
from .gpus import gpu as lookup_gpu
from .latency import predict_latency
from .networks import Layer, Network, check_count, layer_shape, load_network, segments
from .shapes import Conv2d, Gemm, as_shape, check_dtype

RTOL = 1e-9                  # latencies within this relative tolerance are "the same"
BUDGET_RTOL = 1e-12          # the budget holds to this relative tolerance (floating-point summation order)
EXACT_WORK_LIMIT = 4e8       # exact DP element operations (about a second) before "auto" goes Lagrangian
_GEMM_FIELDS = ("m", "n", "k", "batch")
_CONV_FIELDS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding", "dilation", "groups")


# ============================================================================ batched prediction


def predict_many(shapes, gpu: GPUSpec, backend=None) -> list[dict]:
    """Predict many (array) shapes with one ``predict_latency`` call per (kind, dtype) group.

    Returns per shape a dict of flat arrays: latency_s, waves, tiles, tail_utilization, config.
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
        p = predict_latency(big, gpu, backend=backend)
        fields = {k: np.atleast_1d(np.asarray(getattr(p, k))) for k in
                  ("latency_s", "waves", "tiles", "tail_utilization", "config")}
        start = 0
        for i, size in zip(idx, sizes, strict=True):
            out[i] = {k: v[start:start + size] for k, v in fields.items()}
            start += size
    return out


# ============================================================================ layer level


def _first_above(values: np.ndarray, starts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per query, the smallest ``j >= start`` with ``values[j] > threshold`` (``len(values)`` if none).

    Binary lifting over a sparse table of range maxima: O(n log n) build, O(log n) per query, all
    vectorised.
    """
    n = len(values)
    if n == 0:
        return np.zeros(np.shape(starts), dtype=np.int64)
    levels = [np.asarray(values, dtype=float)]
    size = 1
    while 2 * size <= n:
        prev = levels[-1]
        levels.append(np.maximum(prev[:-size], prev[size:]))
        size *= 2
    pos = np.asarray(starts, dtype=np.int64).copy()
    for lvl in range(len(levels) - 1, -1, -1):
        step, tab = 1 << lvl, levels[lvl]
        idx = np.clip(pos, 0, len(tab) - 1)
        jump = (pos + step <= n) & (tab[idx] <= thresholds)
        pos = np.where(jump, pos + step, pos)
    return pos


def _last_below(values: np.ndarray, ends: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per query, the largest ``j <= end`` with ``values[j] < threshold`` (-1 if none)."""
    n = len(values)
    rev = -np.asarray(values, dtype=float)[::-1]
    j = _first_above(rev, n - 1 - np.asarray(ends), -np.asarray(thresholds))
    return n - 1 - j


def steps_for(widths: np.ndarray, latency_s: np.ndarray, queries, alignment: int, rtol: float = RTOL):
    """Step start, free width and cut width for every query width (latency given at widths 1..W).

    ``widths`` must be ``arange(1, W + 1)``. Returns int arrays ``(step_start, free_width, cut_width)``;
    ``cut_width`` is 0 where no aligned width below is faster.
    """
    q = np.asarray(queries, dtype=np.int64)
    lat = np.asarray(latency_s, dtype=float)
    a = int(alignment)
    aligned = widths[a - 1::a]
    lat_a = lat[a - 1::a]
    lq = lat[q - 1]
    if aligned.size == 0:                            # no aligned width at all: every query is its own step
        return q.copy(), q.copy(), np.zeros_like(q)
    # free: walk up the aligned widths above q while latency <= latency(q) * (1 + rtol)
    start = q // a                                   # index of the first aligned width > q
    stop = _first_above(lat_a, start, lq * (1 + rtol))
    free = np.where(stop > start, aligned[np.clip(stop - 1, 0, len(aligned) - 1)], q)
    # cut: the widest aligned width < q that is strictly faster
    end = (q - 1) // a - 1                           # index of the last aligned width < q
    j = _last_below(lat_a, end, lq * (1 - rtol))
    cut = np.where(j >= 0, aligned[np.clip(j, 0, None)], 0)
    step_start = np.where(cut > 0, np.minimum(q, cut + a), np.minimum(q, a))
    return step_start, free, cut


@dataclass(frozen=True, eq=False)
class Staircase:
    """A layer's latency at every output width 1..max_width, and the step answers for each width."""

    name: str
    widths: np.ndarray
    latency_s: np.ndarray
    waves: np.ndarray
    tiles: np.ndarray
    step_start: np.ndarray     # per width: narrowest width of its step
    free_width: np.ndarray     # per width: widest width with the same latency
    cut_width: np.ndarray      # per width: widest width of the next lower step (0: none)
    alignment: int
    config: np.ndarray | None = None

    def at(self, width: int) -> LayerSolution:
        i = int(width) - 1
        if not 0 <= i < len(self.widths):
            raise ValueError(f"width: {width} is outside the staircase's 1..{len(self.widths)}")
        cut = int(self.cut_width[i])
        free = int(self.free_width[i])
        cfg = self.config[i] if self.config is not None else None
        return LayerSolution(
            name=self.name, width=int(width), latency_s=float(self.latency_s[i]), waves=int(self.waves[i]),
            tiles=int(self.tiles[i]), config=getattr(cfg, "name", str(cfg)),
            step_start=int(self.step_start[i]), free_width=free,
            free_latency_s=float(self.latency_s[free - 1]),
            cut_width=cut or None, cut_latency_s=float(self.latency_s[cut - 1]) if cut else None,
            alignment=self.alignment, free_is_truncated=free >= len(self.widths) - self.alignment + 1,
        )


@dataclass(frozen=True)
class LayerSolution:
    name: str
    width: int
    latency_s: float
    waves: int
    tiles: int
    config: str
    step_start: int               # narrowest width on this step (same latency as ``width``)
    free_width: int               # widest width with the same predicted latency (free capacity)
    free_latency_s: float
    cut_width: int | None         # widest width of the next lower step: the cut that saves time
    cut_latency_s: float | None
    alignment: int
    free_is_truncated: bool = False   # the step reached the end of the widths searched

    @property
    def free_channels(self) -> int:
        return self.free_width - self.width

    @property
    def cut_saving_s(self) -> float:
        return 0.0 if self.cut_latency_s is None else self.latency_s - self.cut_latency_s


def _width_field(shape) -> str:
    return "k" if isinstance(shape, Conv2d) else "n"


def _with_width(shape, widths):
    if isinstance(shape, Conv2d) and np.all(np.asarray(shape.groups) > 1):
        if not (np.all(shape.groups == shape.c) and np.all(shape.c == shape.k)):
            raise ValueError("groups: the solver varies a grouped conv only when it is depthwise "
                             "(groups == c == k)")
        return dataclasses.replace(shape, c=widths, k=widths, groups=widths)
    return dataclasses.replace(shape, **{_width_field(shape): widths})


def _check_alignment(alignment) -> int:
    if isinstance(alignment, bool) or not isinstance(alignment, int | np.integer) or alignment < 1:
        raise ValueError(f"alignment: must be an integer >= 1, got {alignment!r}")
    return int(alignment)


def _default_max_width(width: int, alignment: int) -> int:
    return -(-max(2 * width, width + 4 * alignment) // alignment) * alignment


def layer_staircase(shape, gpu="h100-sxm", backend=None, alignment: int = 8, max_width: int | None = None,
                    name: str = "layer") -> Staircase:
    """The staircase of ``shape`` over output widths 1..max_width (one vectorised prediction)."""
    shape = as_shape(shape)
    if not shape.is_scalar:
        raise ValueError("shape: give a single shape; the solver sweeps the width itself")
    alignment = _check_alignment(alignment)
    width = int(getattr(shape, _width_field(shape)))
    max_width = _default_max_width(width, alignment) if max_width is None else int(max_width)
    if max_width < max(width, alignment):
        raise ValueError(f"max_width: must be >= the width ({width}) and the alignment ({alignment})")
    widths = np.arange(1, max_width + 1)
    p = predict_latency(_with_width(shape, widths), lookup_gpu(gpu), backend=backend)
    lat = np.asarray(p.latency_s, dtype=float)
    step_start, free, cut = steps_for(widths, lat, widths, alignment)
    return Staircase(name=name, widths=widths, latency_s=lat, waves=np.asarray(p.waves),
                     tiles=np.asarray(p.tiles), step_start=step_start, free_width=free, cut_width=cut,
                     alignment=alignment, config=np.asarray(p.config))


def solve_layer(shape, gpu="h100-sxm", width: int | None = None, backend=None, alignment: int = 8,
                max_width: int | None = None, name: str = "layer") -> LayerSolution:
    """Step, free capacity and the saving cut for one layer at ``width`` (default: the shape's own).

    The width is the GEMM's ``n`` or the convolution's output channels ``k`` (a depthwise conv's
    channels).
    """
    shape = as_shape(shape)
    if width is not None:
        shape = _with_width(shape, width)
    w = int(getattr(shape, _width_field(shape)))
    return layer_staircase(shape, gpu, backend, alignment, max_width, name).at(w)


def network_staircases(network, gpu="h100-sxm", count: int | None = None, dtype: str = "fp16",
                       alignment: int = 8, backend=None, tp: int = 1) -> tuple[Staircase, ...]:
    """Every layer's staircase over output widths 1..2x original (inputs at their original widths).

    All layers go through one ``predict_latency`` call per layer kind.
    """
    net = load_network(network, tp=tp)
    gpu = lookup_gpu(gpu)
    count = check_count(count, net)
    alignment = _check_alignment(alignment)
    shapes, ranges = [], []
    for layer in net.layers:
        mw = _default_max_width(layer.out_width, alignment)
        widths = np.arange(1, mw + 1)
        if layer.depthwise:
            sh = layer_shape(dataclasses.replace(layer, in_var="_", in_width=layer.in_width), count, dtype,
                             in_width=widths, tp=net.tp)
        else:
            sh = layer_shape(dataclasses.replace(layer, out_var="_", out_mult=1), count, dtype,
                             out_width=widths, tp=net.tp)
        shapes.append(sh)
        ranges.append(widths)
    preds = predict_many(shapes, gpu, backend)
    out = []
    for layer, widths, p in zip(net.layers, ranges, preds, strict=True):
        step_start, free, cut = steps_for(widths, p["latency_s"], widths, alignment)
        out.append(Staircase(name=layer.name, widths=widths, latency_s=p["latency_s"], waves=p["waves"],
                             tiles=p["tiles"], step_start=step_start, free_width=free, cut_width=cut,
                             alignment=alignment, config=p["config"]))
    return tuple(out)


# ============================================================================ network level


@dataclass(frozen=True)
class LayerChange:
    name: str
    width_before: int
    width_after: int
    latency_before_s: float
    latency_after_s: float
    in_width_before: int
    in_width_after: int
    width_reference: int | None = None          # the reference network's (keep mode: uniform)
    latency_reference_s: float | None = None

    @property
    def changed(self) -> bool:
        return (self.width_before, self.in_width_before) != (self.width_after, self.in_width_after)


@dataclass(frozen=True)
class NetworkSolution:
    network: str
    gpu: str
    dtype: str
    count: int
    count_name: str                       # "batch" or "tokens"
    mode: str                             # "budget", "keep", "reference" or "channels"
    objective: str                        # "max_channels" or "min_latency"
    method: str                           # "exact" or "lagrangian"
    alignment: int
    layers: tuple[LayerChange, ...]
    widths_before: dict
    widths_after: dict
    channels_before: int
    channels_after: int
    latency_before_s: float
    latency_after_s: float
    budget_s: float | None                # the latency bound solved for (max_channels)
    min_channels: int | None              # the channel bound solved for (min_latency)
    channels_upper_bound: int | None      # certified: no width choice within budget keeps more
    latency_lower_bound_s: float | None   # certified: no choice keeping min_channels is faster
    keep: float | None = None
    max_change: float | None = None           # the neighbourhood of the reference widths searched
    widths_reference: dict | None = None      # the baseline: the uniform keep-ratio network in keep mode
    channels_reference: int | None = None
    latency_reference_s: float | None = None

    @property
    def optimal(self) -> bool:
        if self.objective == "max_channels":
            return self.channels_upper_bound == self.channels_after
        bound = self.latency_lower_bound_s
        return bound is not None and self.latency_after_s <= bound * (1 + 1e-9)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = [dataclasses.asdict(x) for x in self.layers]
        d["totals"] = {
            "channels_before": self.channels_before, "channels_after": self.channels_after,
            "latency_before_s": self.latency_before_s, "latency_after_s": self.latency_after_s,
            "budget_s": self.budget_s, "channels_upper_bound": self.channels_upper_bound,
            "latency_lower_bound_s": self.latency_lower_bound_s,
        }
        if self.widths_reference is not None:
            d["totals"] |= {"channels_reference": self.channels_reference,
                            "latency_reference_s": self.latency_reference_s}
        return d


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


def uniform_widths(net: Network, keep: float, alignment: int = 8) -> dict[str, int]:
    """Each prunable width times ``keep``, rounded to the nearest multiple of its step (at least one step)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep: must be in (0, 1], got {keep!r}")
    out = {}
    for v in net.variables:
        step = width_step(v, alignment, net.tp)
        w = max(1, math.floor(keep * v.width / step + 0.5)) * step
        out[v.name] = int(min(w, v.width))
    return out


def network_latency(network, widths: dict | None = None, gpu="h100-sxm", count: int | None = None,
                    dtype: str = "fp16", backend=None) -> tuple[float, np.ndarray]:
    """Predicted latency of ``network`` at ``widths`` (variable -> width; missing: original): the total
    and each layer's."""
    net = load_network(network)
    count = check_count(count, net)
    check_dtype(dtype)
    w = net.original_widths | dict(widths or {})
    unknown = set(w) - set(net.original_widths)
    if unknown:
        raise ValueError(f"widths: unknown width variables {sorted(unknown)}")
    shapes = [layer_shape(x, count, dtype, in_width=w.get(x.in_var), out_width=w.get(x.out_var), tp=net.tp)
              for x in net.layers]
    lat = np.array([float(p["latency_s"][0]) for p in predict_many(shapes, lookup_gpu(gpu), backend)])
    return float(lat.sum()), lat


@dataclass(frozen=True, eq=False)
class _Problem:
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
                  bounds: dict | None = None, include: dict | None = None, backend=None) -> _Problem:
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
        table = np.where(table <= orig * (1 + RTOL), table, np.inf)     # never slower than the original
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
    return _Problem(names=tuple(cands), cands=cands, paths=paths, unary=unary, pair=oriented, fixed_s=fixed,
                    layer_tables=tuple(tables), original_s=tuple(originals), path_keys=keys)


def _total_latency(pb: _Problem, idx: dict) -> float:
    total = pb.fixed_s
    for v in pb.names:
        total += pb.unary[v][idx[v]]
    for (a, b), t in pb.pair.items():
        total += t[idx[a], idx[b]]
    return float(total)


def _channels(pb: _Problem, idx: dict) -> int:
    return int(sum(int(pb.cands[v][idx[v]]) for v in pb.names))


# ---------------------------------------------------------------------------- exact: DP + knapsack


def _exact_work(pb: _Problem, unit: int) -> float:
    work, total_units = 0.0, sum(int(pb.cands[v][-1]) // unit for v in pb.names)
    for path in pb.paths:
        c = int(pb.cands[path[0]][-1]) // unit
        for a, b in zip(path, path[1:], strict=False):
            work += len(pb.cands[a]) * (c + 1) * len(pb.cands[b])
            c += int(pb.cands[b][-1]) // unit
        work += (c + 1) * total_units          # the knapsack merge
    return work


def _path_frontier(pb: _Problem, path, unit: int):
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


def _solve_exact(pb: _Problem, budget_s: float | None, min_channels: int | None, unit: int) -> dict:
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
            raise _infeasible(budget_s, float(total[feasible].min()))
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


def _infeasible(budget_s: float, least_s: float) -> ValueError:
    return ValueError(f"budget: {budget_s * 1e3:.4g} ms is below the least predicted latency reachable with "
                      f"these candidate widths, {least_s * 1e3:.4g} ms")


# ---------------------------------------------------------------------------- Lagrangian


def _viterbi(pb: _Problem, path, mu: float):
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


def _relaxed(pb: _Problem, mu: float, cache: dict):
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


def _solve_lagrangian(pb: _Problem, budget_s: float | None, min_channels: int | None):
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
        return _widen(pb, dict(r0[0])), r0[1], None
    if min_channels is not None and not ok(r0):
        raise ValueError(f"min_channels: {min_channels} is more than the network has ({r0[1]})")
    # bracket: lo fails / hi passes (budget); lo passes / hi fails (channels)
    lo, hi = 0.0, 1.0
    while ok(at(hi)) == (min_channels is not None):
        lo, hi = hi, hi * 4.0
        if hi > _MU_MAX:
            if budget_s is not None:
                raise _infeasible(budget_s, at(_MU_MAX)[2])
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
        idx = _widen(pb, _greedy_fill(pb, dict(best[0]), budget_s))
        upper = min(r[1] - m * (r[2] - budget_s) for m, r in evaluated)
        return idx, int(math.floor(upper + 1e-6)), None
    idx = _widen(pb, _greedy_trim(pb, dict(best[0]), min_channels))
    lower = max(r[2] - (r[1] - min_channels) / m for m, r in evaluated)
    return idx, None, lower


def _delta(pb: _Problem, idx: dict, v: str, neighbours: dict):
    """Latency of every candidate of ``v`` minus the current, other widths fixed."""
    lat = pb.unary[v].copy()
    for (a, b), t in neighbours[v]:
        lat = lat + (t[:, idx[b]] if a == v else t[idx[a], :])
    return lat - lat[idx[v]]


def _neighbours(pb: _Problem) -> dict:
    nb = {v: [] for v in pb.names}
    for (a, b), t in pb.pair.items():
        nb[a].append(((a, b), t))
        nb[b].append(((a, b), t))
    return nb


def _greedy_fill(pb: _Problem, idx: dict, budget_s: float) -> dict:
    """Spend leftover budget: repeatedly take the widening with the most channels per second."""
    nb = _neighbours(pb)
    slack = budget_s - _total_latency(pb, idx)
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


def _greedy_trim(pb: _Problem, idx: dict, min_channels: int) -> dict:
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


def _widen(pb: _Problem, idx: dict) -> dict:
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


# ---------------------------------------------------------------------------- the network API


def resolve_count(net: Network, count=None, batch=None, tokens=None) -> int:
    """The batch size or token count: ``count``, or ``batch`` / ``tokens`` (exactly one)."""
    given = {k: v for k, v in (("count", count), ("batch", batch), ("tokens", tokens)) if v is not None}
    if len(given) != 1:
        raise ValueError(f"{net.count}: give exactly one of count, batch or tokens for {net.name} "
                         f"(it uses {net.count}), got {sorted(given) or 'none'}")
    return check_count(next(iter(given.values())), net)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


DEFAULT_MAX_CHANGE = 0.1


def solve_network(network, gpu="h100-sxm", *, count: int | None = None, batch: int | None = None,
                  tokens: int | None = None, dtype: str = "fp16", budget_s: float | None = None,
                  keep: float | None = None, reference: dict | None = None, min_channels: int | None = None,
                  match: str = "latency", max_change: float | None = DEFAULT_MAX_CHANGE,
                  min_keep: float = 0.0, alignment: int = 8, method: str = "auto", backend=None,
                  tp: int = 1) -> NetworkSolution:
    """Per-layer widths that keep the most channels within a latency budget (see the module docstring).

    Give exactly one of:

    * ``budget_s``: maximise channels with predicted latency <= budget_s;
    * ``min_channels``: minimise latency keeping at least that many channels;
    * ``keep`` (a uniform keep ratio, widths rounded to the alignment) or ``reference`` (variable ->
      width, e.g. a pruning method's per-layer widths): the reference network is the baseline. With
      ``match="latency"`` channels are maximised within its predicted latency; with ``match="channels"``
      latency is minimised keeping at least its channels. Each width stays within ``max_change`` x its
      original width of the reference width (None: anywhere), so the pruning method's per-layer choice
      is kept and only moved to step edges.

    ``min_keep`` bounds every width below (a fraction of its original). ``method``: "auto", "exact" or
    "lagrangian". Channels are the sum of the prunable widths (``network.variables``).
    """
    net = load_network(network, tp=tp)
    gpu = lookup_gpu(gpu)
    check_dtype(dtype)
    n = resolve_count(net, count, batch, tokens)
    alignment = _check_alignment(alignment)
    modes = {k: v for k, v in (("budget", budget_s), ("keep", keep), ("reference", reference),
                               ("channels", min_channels)) if v is not None}
    if len(modes) != 1:
        raise ValueError("mode: give exactly one of budget_s, keep, reference or min_channels, "
                         f"got {sorted(modes) or 'none'}")
    if method not in ("auto", "exact", "lagrangian"):
        raise ValueError(f"method: {method!r} is not one of auto, exact, lagrangian")
    if match not in ("latency", "channels"):
        raise ValueError(f"match: {match!r} is not one of latency, channels")
    for name, value in (("min_keep", min_keep), ("max_change", 0.0 if max_change is None else max_change)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    mode = next(iter(modes))
    if budget_s is not None:
        budget_s = _check_positive("budget_s", budget_s)
    if min_channels is not None and (isinstance(min_channels, bool)
                                     or not isinstance(min_channels, int | np.integer) or min_channels < 0):
        raise ValueError(f"min_channels: must be an integer >= 0, got {min_channels!r}")

    ref = ref_layers = lat_ref = ch_ref = None
    if mode == "keep":
        if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0 < keep <= 1:
            raise ValueError(f"keep: must be in (0, 1], got {keep!r}")
        ref = uniform_widths(net, keep, alignment)
    elif mode == "reference":
        ref = _check_reference(net, reference)
    bounds = {v.name: (min_keep * v.width, None) for v in net.variables}
    if ref is not None:
        ch_ref = sum(ref.values())
        lat_ref, ref_layers = network_latency(net, ref, gpu, n, dtype, backend)
        if max_change is not None:
            bounds = {v.name: (max(min_keep * v.width, ref[v.name] - max_change * v.width),
                               ref[v.name] + max_change * v.width) for v in net.variables}
    pb = build_problem(net, gpu, n, dtype, alignment, bounds, ref, backend)
    latency_before = float(sum(pb.original_s))
    if ref is not None:
        if match == "latency":
            budget_s = min(lat_ref, latency_before)
        else:
            min_channels = ch_ref

    unit = math.gcd(*[int(x) for c in pb.cands.values() for x in c]) if pb.names else 1
    if method == "auto":
        method = "exact" if _exact_work(pb, unit) <= EXACT_WORK_LIMIT else "lagrangian"
    if not pb.names:
        if budget_s is not None and pb.fixed_s > budget_s:
            raise _infeasible(budget_s, pb.fixed_s)
        idx, upper, lower = {}, None, None
    else:
        # sums taken in different orders differ in the last bits: the budget holds to BUDGET_RTOL
        bound = None if budget_s is None else budget_s * (1 + BUDGET_RTOL)
        if method == "exact":
            idx = _widen(pb, _solve_exact(pb, bound, min_channels, unit))
            upper = lower = None
        else:
            idx, upper, lower = _solve_lagrangian(pb, bound, min_channels)
    after = {v: int(pb.cands[v][idx[v]]) for v in pb.names}
    latency_after = _total_latency(pb, idx)
    channels_after = sum(after.values())
    if upper is None and lower is None:            # exact
        upper = channels_after if budget_s is not None else None
        lower = latency_after if budget_s is None else None
    layers = _layer_changes(net, pb, idx, after, ref, ref_layers)
    return NetworkSolution(
        network=net.name, gpu=gpu.name, dtype=dtype, count=n, count_name=net.count, mode=mode,
        objective="max_channels" if budget_s is not None else "min_latency", method=method,
        alignment=alignment,
        layers=layers, widths_before=net.original_widths, widths_after=after,
        channels_before=sum(v.width for v in net.variables), channels_after=channels_after,
        latency_before_s=latency_before, latency_after_s=latency_after, budget_s=budget_s,
        min_channels=None if min_channels is None else int(min_channels), channels_upper_bound=upper,
        latency_lower_bound_s=lower, keep=keep, max_change=max_change if ref is not None else None,
        widths_reference=ref, channels_reference=ch_ref, latency_reference_s=lat_ref,
    )


def _check_reference(net: Network, reference) -> dict:
    if not isinstance(reference, dict):
        raise ValueError("reference: expected a dict of width variable -> width, "
                         f"got {type(reference).__name__}")
    unknown = set(reference) - set(net.original_widths)
    if unknown:
        raise ValueError(f"reference: unknown width variables {sorted(unknown)}; "
                         f"the network's are {', '.join(net.original_widths)}")
    out = net.original_widths | reference
    for v, w in out.items():
        orig = net.original_widths[v]
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 1 <= w <= orig:
            raise ValueError(f"reference: width of {v!r} must be an integer in 1..{orig}, got {w!r}")
    return {v: int(w) for v, w in out.items()}


def _layer_changes(net: Network, pb: _Problem, idx: dict, after: dict, ref, ref_layers):
    out = []
    for i, (layer, (axes, table), orig) in enumerate(zip(net.layers, pb.layer_tables, pb.original_s,
                                                         strict=True)):
        lat = float(table[tuple(idx[v] for v in axes)]) if axes else orig

        def out_w(w, layer=layer):
            if layer.depthwise and layer.in_var is not None:
                return w[layer.in_var]
            return layer.out_width if layer.out_var is None else layer.out_mult * w[layer.out_var]

        def in_w(w, layer=layer):
            return layer.in_width if layer.in_var is None else layer.in_mult * w[layer.in_var]

        out.append(LayerChange(
            name=layer.name, width_before=layer.out_width, width_after=int(out_w(after)),
            latency_before_s=orig, latency_after_s=lat, in_width_before=layer.in_width,
            in_width_after=int(in_w(after)),
            width_reference=None if ref is None else int(out_w(ref)),
            latency_reference_s=None if ref is None else float(ref_layers[i]),
        ))
    return tuple(out)


def solve(target, gpu="h100-sxm", **kwargs):
    """``solve_layer`` for a shape (``wm.Gemm``, ``wm.Conv2d`` or an (m, n, k) tuple), else
    ``solve_network`` for a network (a preset name, a layer-list file or a ``Network``)."""
    if isinstance(target, Gemm | Conv2d) or (isinstance(target, tuple) and len(target) == 3):
        return solve_layer(target, gpu, **kwargs)
    return solve_network(target, gpu, **kwargs)


# ============================================================================ transformer sizing

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
    from .networks import transformer_config

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
    alignment = _check_alignment(alignment)
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
