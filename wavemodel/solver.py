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
  layer's original latency is forbidden, so **no layer is ever predicted slower than it was**, but
  for a layer that keep or reference mode leaves at its reference widths (which must stay reachable:
  a uniform width whose rows of C start off 32-byte sectors, 56 channels for ResNet-50's stem, can be
  slower than the original 64). In keep
  mode each width stays within ``max_change`` (default 0.1) of its original width around the uniform
  width: the pruning method's per-layer choice is kept and moved to step edges (``max_change=None``
  lets the solver trade whole layers, e.g. starve the high-resolution ones, for channel count).

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

* **Sustained runs.** A network's layers run back to back, so the network and sizing modes predict
  them with ``sustained=True``: where the GPU's profile knows the rate its board sustains at the
  power limit (``wavemodel.power``; on the H100 SXM for cuBLAS fp16 and bf16), no layer runs faster than its
  FLOPs at that rate. Large GEMMs then cost in proportion to their FLOPs and have no free widths
  (the LLaMA-7B MLP at 4096 tokens, measured: the card holds ~1300 MHz at 700 W at every FFN width).
  The layer mode predicts one call on its own.

* **Transformer sizing** (``size_transformer``, in ``sizing``): for the hidden size, FFN width, head
  count and vocabulary, the nearby sizes that are free (same latency, more capacity), cheaper (the next
  step down) or padded (a larger size that is faster, e.g. a vocabulary without a tail), each with the
  per-GEMM reason (tiles, waves, tail, kernel configuration).

The tables and searches live in ``solver_dp``; this module is the API (``solve`` dispatches a shape to
``solve_layer`` and a network to ``solve_network``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .gpus import gpu as lookup_gpu
from .latency import predict_latency
from .networks import Network, check_count, layer_shape, load_network
from .shapes import Conv2d, Gemm, as_shape, check_dtype
from .sizing import (  # noqa: F401  (re-exported: the solver's public API)
    SIZING_DIMENSIONS,
    GemmChange,
    SizeAdvice,
    SizeOption,
    SizingReport,
    size_transformer,
    transformer_gemms,
)
from .solver_dp import (  # noqa: F401  (re-exported)
    BUDGET_RTOL,
    EXACT_WORK_LIMIT,
    RTOL,
    Problem,
    build_problem,
    candidate_widths,
    check_alignment,
    exact_work,
    infeasible,
    predict_many,
    solve_exact,
    solve_lagrangian,
    total_latency,
    widen,
    width_step,
)

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


def with_width(shape, widths):
    """``shape`` with its width (GEMM ``n``, conv ``k``; a depthwise conv's channels) set to ``widths``."""
    if isinstance(shape, Conv2d) and np.all(np.asarray(shape.groups) > 1):
        if not (np.all(shape.groups == shape.c) and np.all(shape.c == shape.k)):
            raise ValueError("groups: the solver varies a grouped conv only when it is depthwise "
                             "(groups == c == k)")
        return dataclasses.replace(shape, c=widths, k=widths, groups=widths)
    return dataclasses.replace(shape, **{_width_field(shape): widths})


def _default_max_width(width: int, alignment: int) -> int:
    return -(-max(2 * width, width + 4 * alignment) // alignment) * alignment


def layer_staircase(shape, gpu="h100-sxm", backend=None, alignment: int = 8, max_width: int | None = None,
                    name: str = "layer") -> Staircase:
    """The staircase of ``shape`` over output widths 1..max_width (one vectorised prediction)."""
    shape = as_shape(shape)
    if not shape.is_scalar:
        raise ValueError("shape: give a single shape; the solver sweeps the width itself")
    alignment = check_alignment(alignment)
    width = int(getattr(shape, _width_field(shape)))
    max_width = _default_max_width(width, alignment) if max_width is None else int(max_width)
    if max_width < max(width, alignment):
        raise ValueError(f"max_width: must be >= the width ({width}) and the alignment ({alignment})")
    widths = np.arange(1, max_width + 1)
    p = predict_latency(with_width(shape, widths), lookup_gpu(gpu), backend=backend)
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
        shape = with_width(shape, width)
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
    alignment = check_alignment(alignment)
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
                    dtype: str = "fp16", backend=None, sustained: bool = True) -> tuple[float, np.ndarray]:
    """Predicted latency of ``network`` at ``widths`` (variable -> width; missing: original): the total
    and each layer's (``sustained``: as a run of layers back to back, under the board's power limit)."""
    net = load_network(network)
    count = check_count(count, net)
    check_dtype(dtype)
    w = net.original_widths | dict(widths or {})
    unknown = set(w) - set(net.original_widths)
    if unknown:
        raise ValueError(f"widths: unknown width variables {sorted(unknown)}")
    shapes = [layer_shape(x, count, dtype, in_width=w.get(x.in_var), out_width=w.get(x.out_var), tp=net.tp)
              for x in net.layers]
    lat = np.array([float(p["latency_s"][0])
                    for p in predict_many(shapes, lookup_gpu(gpu), backend, sustained=sustained)])
    return float(lat.sum()), lat


def layer_bounds(network, widths: dict | None = None, gpu="h100-sxm", count: int | None = None,
                 dtype: str = "fp16", backend=None) -> tuple[str, ...]:
    """What bounds each layer of ``network`` at ``widths`` (as ``network_latency`` predicts it):
    "compute", "memory", "latency" or "power" (the board's sustained power limit, ``wavemodel.power``:
    such a layer's latency follows its FLOPs, so no width of it is free)."""
    net = load_network(network)
    count = check_count(count, net)
    w = net.original_widths | dict(widths or {})
    shapes = [layer_shape(x, count, dtype, in_width=w.get(x.in_var), out_width=w.get(x.out_var), tp=net.tp)
              for x in net.layers]
    return tuple(str(p["bound"][0]) for p in predict_many(shapes, lookup_gpu(gpu), backend))


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
    alignment = check_alignment(alignment)
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
        method = "exact" if exact_work(pb, unit) <= EXACT_WORK_LIMIT else "lagrangian"
    if not pb.names:
        if budget_s is not None and pb.fixed_s > budget_s:
            raise infeasible(budget_s, pb.fixed_s)
        idx, upper, lower = {}, None, None
    else:
        # sums taken in different orders differ in the last bits: the budget holds to BUDGET_RTOL
        bound = None if budget_s is None else budget_s * (1 + BUDGET_RTOL)
        if method == "exact":
            idx = widen(pb, solve_exact(pb, bound, min_channels, unit))
            upper = lower = None
        else:
            idx, upper, lower = solve_lagrangian(pb, bound, min_channels)
    after = {v: int(pb.cands[v][idx[v]]) for v in pb.names}
    latency_after = total_latency(pb, idx)
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


def _layer_changes(net: Network, pb: Problem, idx: dict, after: dict, ref, ref_layers):
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
