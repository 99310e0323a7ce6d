"""The board power limit: the floor it sets under a long run of compute-heavy layers.

A GPU board has a power limit (700 W for an H100 SXM). A tensor-core GEMM draws power in proportion
to the rate at which it does math (energy per FLOP at a given voltage and clock), so a layer that
keeps every SM's tensor cores busy for long enough draws more than the limit at the boost clock,
and the card lowers its SM clock (and voltage) until the board power is back at the limit. The
layer's latency is then set by energy, not by waves:

    latency_s >= flops / sustained_flops_per_s

where ``sustained_flops_per_s`` is the math rate the board sustains at its limit for that dtype and
library (``(limit - static power) / energy per FLOP``, measured, not derived: both terms vary with the
clock the card settles at). Measured on the H100 SXM (validation/data/h100-sxm/width_scan/): the
LLaMA-7B MLP block at 4096 tokens, run back to back, draws ~698 W at ~1300 MHz instead of 1980 MHz,
and its FP16 GEMMs sustain ~620 TFLOP/s at every FFN width from 4952 to 10456 (std 2.5 %; BF16
~650); a wave's idle tail SMs only let the clock rise, so the staircase the wave model predicts is
flattened into a line. The floor applies to *sustained* work (a network's layers back to back, a
training or serving loop): a single call timed in a short window after the card idled (our sweeps)
bursts above it, before the power controller reacts. Layers whose math rate stays under the floor
(small GEMMs, most convolutions, memory-bound calls) are not affected.

``power_floor_s`` is the floor; ``fit_sustained_rate`` fits the rate to measured chains of layers.
"""

from __future__ import annotations

import numpy as np

_FIT_POINTS = 4001      # rates tried: from 1 % to 100x the chains' mean rate, 0.1 % apart


def power_floor_s(flops, sustained_flops_per_s: float | None):
    """The least time ``flops`` can take at the board's sustained rate (0 where no rate is known)."""
    f = np.asarray(flops, dtype=float)
    floor = f / sustained_flops_per_s if sustained_flops_per_s else np.zeros_like(f)
    return floor if floor.ndim else float(floor)


def chain_latency_s(layer_model_s, layer_flops, sustained_flops_per_s: float):
    """A chain's latency: each layer at the larger of its model time and its power floor, summed.

    ``layer_model_s`` and ``layer_flops`` are arrays of shape (chains, layers)."""
    model = np.asarray(layer_model_s, dtype=float)
    floor = np.asarray(layer_flops, dtype=float) / sustained_flops_per_s
    return np.maximum(model, floor).sum(axis=-1)


def fit_sustained_rate(layer_model_s, layer_flops, measured_s) -> float:
    """The sustained rate (FLOP/s) that best explains measured chain latencies (least squares of the
    log ratio predicted / measured, by a dense 1-D search: the cost is piecewise smooth in the rate).

    ``layer_model_s``, ``layer_flops``: (chains, layers) arrays of each layer's wave-model time (no
    floor) and FLOPs; ``measured_s``: (chains,) measured latencies of the chains run back to back.
    """
    model = np.asarray(layer_model_s, dtype=float)
    flops = np.asarray(layer_flops, dtype=float)
    measured = np.asarray(measured_s, dtype=float)
    if model.ndim != 2 or model.shape != flops.shape or measured.shape != model.shape[:1]:
        raise ValueError(f"layer_model_s, layer_flops, measured_s: expected (chains, layers) twice and "
                         f"(chains,), got {model.shape}, {flops.shape}, {measured.shape}")
    if measured.size == 0 or np.any(measured <= 0) or np.any(flops < 0):
        raise ValueError("measured_s: need at least one chain and positive latencies; flops >= 0")
    guess = float(np.median(flops.sum(axis=1) / measured))
    rates = guess * np.logspace(-2, 2, _FIT_POINTS)
    pred = np.maximum(model[None], flops[None] / rates[:, None, None]).sum(axis=2)   # (rates, chains)
    cost = (np.log(pred / measured[None]) ** 2).sum(axis=1)
    rate = float(rates[int(np.argmin(cost))])
    if not np.any(flops / rate > model):
        raise ValueError("measured_s: no chain runs slower than the wave model says, so these data do "
                         "not show a power limit (measure chains of compute-heavy layers, run for long)")
    return rate
