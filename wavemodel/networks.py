"""Networks for the width solver: ordered layers, each a GEMM or convolution template, and width links.

A network is a list of layers. Each layer has an input width (GEMM ``k``, convolution ``c``) and an
output width (GEMM ``n``, convolution ``k``). Widths that may be pruned are *width variables*: a layer
names the variable its output width is (``out``) and the variable its input width comes from (``in``),
each optionally multiplied (``out_mult``: a fused QKV projection outputs 3x the attention width;
``in_mult``: a classifier after a 7x7 flatten reads 49x the last conv's channels). Several layers
naming the same ``out`` variable have tied widths (LLaMA's gate and up projections); a width no
variable names is fixed (ResNet bottleneck outputs, tied to the residual stream). A depthwise
convolution has ``groups`` equal to its channels, so its input and output are the same variable.

The links must form chains: every layer's latency depends on at most two variables, its input's and
its output's, and the variables it ties form disjoint paths (``segments``). The solver runs a DP along
each path; independent paths share only the latency budget.

The batch size (convolutions: ``n``; GEMMs: ``m``) or token count is supplied at solve time. A
tensor-parallel degree ``tp`` divides the sharded dimension of each layer that declares one
(``shard = "out"``: column parallel, ``"in"``: row parallel); fixed sharded widths round up.

Presets are data files in ``data/networks/*.json``: an explicit ``layers`` list, or a ``transformer``
table of hyper-parameters expanded by ``transformer_layers``. ``load_network`` also reads a JSON (or,
with PyYAML installed, YAML) file of the same schema; ``from_torch`` walks a ``torch.nn.Module``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .shapes import Conv2d, Gemm

OPS = ("gemm", "conv")
SHARDS = ("in", "out")
COUNTS = ("batch", "tokens")
_LAYER_KEYS = {"name", "op", "in", "out", "in_mult", "out_mult", "shard", "k", "n", "c", "h", "w", "r", "s",
               "stride", "padding", "dilation", "groups"}
_TOP_KEYS = {"name", "description", "count", "layers", "units", "transformer", "source"}


@dataclass(frozen=True)
class Layer:
    """One GEMM or convolution with its width links (see the module docstring)."""

    name: str
    op: str                          # "gemm" or "conv"
    in_width: int                    # logical input width: GEMM k, conv c (before tensor-parallel sharding)
    out_width: int                   # logical output width: GEMM n, conv k
    in_var: str | None = None        # width variable the input comes from (None: fixed)
    out_var: str | None = None       # width variable the output is (None: fixed)
    in_mult: int = 1
    out_mult: int = 1
    shard: str | None = None         # "in" (row parallel) or "out" (column parallel) under tp > 1
    h: int = 1
    w: int = 1
    r: int = 1
    s: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    depthwise: bool = False          # groups = channels (input and output are one variable)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for v in (self.in_var, self.out_var) if v is not None))


@dataclass(frozen=True)
class WidthVar:
    """A prunable width: ``width`` is the original; kept widths are multiples of ``unit`` (e.g. whole
    heads), and of ``shard_unit`` per tensor-parallel shard when a layer shards it."""

    name: str
    width: int
    unit: int = 1
    shard_unit: int = 1
    sharded: bool = False


@dataclass(frozen=True)
class Network:
    name: str
    layers: tuple[Layer, ...]
    variables: tuple[WidthVar, ...]
    count: str = "batch"             # what fills conv n / GEMM m: "batch" or "tokens"
    tp: int = 1
    description: str = ""
    source: str = field(default="", compare=False)

    def var(self, name: str) -> WidthVar:
        for v in self.variables:
            if v.name == name:
                return v
        raise ValueError(f"network {self.name}: no width variable {name!r}")

    @property
    def original_widths(self) -> dict[str, int]:
        return {v.name: v.width for v in self.variables}


# ----------------------------------------------------------------------------------------- shapes


def _sharded(value, tp: int):
    return -(-np.asarray(value) // tp) if tp > 1 else value


def layer_shape(layer: Layer, count, dtype: str, in_width=None, out_width=None, tp: int = 1):
    """The ``wm.Gemm`` / ``wm.Conv2d`` of ``layer`` at the given (logical) variable widths.

    ``in_width`` / ``out_width`` are the widths of the layer's input / output *variables* (arrays
    broadcast); None keeps the original. Multipliers and tensor-parallel sharding are applied here.
    """
    if layer.depthwise:
        cin = cout = (layer.in_width if in_width is None or layer.in_var is None else np.asarray(in_width))
        if tp > 1 and layer.shard is not None:
            cin = cout = _sharded(cin, tp)
    else:
        cin = (layer.in_width if in_width is None or layer.in_var is None
               else np.asarray(in_width) * layer.in_mult)
        cout = (layer.out_width if out_width is None or layer.out_var is None
                else np.asarray(out_width) * layer.out_mult)
        if tp > 1 and layer.shard == "in":
            cin = _sharded(cin, tp)
        elif tp > 1 and layer.shard == "out":
            cout = _sharded(cout, tp)
    if layer.op == "gemm":
        return Gemm(m=count, n=cout, k=cin, dtype=dtype)
    return Conv2d(n=count, c=cin, h=layer.h, w=layer.w, k=cout, r=layer.r, s=layer.s, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, dtype=dtype,
                  groups=cin if layer.depthwise else 1)


# ----------------------------------------------------------------------------------------- building


def _int(d: dict, key: str, where: str, default=None, minimum: int = 1) -> int:
    v = d.get(key, default)
    if v is None:
        raise ValueError(f"{where}: missing {key!r}")
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{where}: {key} must be an integer >= {minimum}, got {v!r}")
    return v


def layer_from_dict(d: dict) -> Layer:
    where = f"layer {d.get('name', '?')!r}"
    if not isinstance(d, dict):
        raise ValueError(f"layer: expected a table/object, got {d!r}")
    unknown = set(d) - _LAYER_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; "
                         f"allowed: {', '.join(sorted(_LAYER_KEYS))}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"layer: every layer needs a non-empty 'name', got {d!r}")
    op = d.get("op", "conv" if "c" in d else "gemm")
    if op not in OPS:
        raise ValueError(f"{where}: op {op!r} is not one of {', '.join(OPS)}")
    shard = d.get("shard")
    if shard is not None and shard not in SHARDS:
        raise ValueError(f"{where}: shard {shard!r} is not one of {', '.join(SHARDS)}")
    for key in ("in", "out"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise ValueError(f"{where}: {key!r} must name a width variable (a string), got {d[key]!r}")
    groups = d.get("groups", 1)
    if groups not in (1, "depthwise"):
        raise ValueError(f"{where}: groups must be 1 or \"depthwise\", got {groups!r}")
    if op == "gemm":
        in_w, out_w = _int(d, "k", where), _int(d, "n", where)
        geom = {}
    else:
        in_w, out_w = _int(d, "c", where), _int(d, "k", where)
        geom = dict(h=_int(d, "h", where), w=_int(d, "w", where, d.get("h")), r=_int(d, "r", where, 1),
                    s=_int(d, "s", where, d.get("r", 1)), stride=_int(d, "stride", where, 1),
                    padding=_int(d, "padding", where, 0, minimum=0),
                    dilation=_int(d, "dilation", where, 1))
    depthwise = groups == "depthwise"
    in_var, out_var = d.get("in"), d.get("out")
    if depthwise:
        if op != "conv" or in_w != out_w:
            raise ValueError(f"{where}: a depthwise layer is a conv with c == k")
        if out_var is None:
            out_var = in_var
        if in_var != out_var:
            raise ValueError(f"{where}: a depthwise layer's input and output are one width: "
                             f"'in' ({in_var!r}) and 'out' ({out_var!r}) must match")
    return Layer(name=name, op=op, in_width=in_w, out_width=out_w, in_var=in_var, out_var=out_var,
                 in_mult=_int(d, "in_mult", where, 1), out_mult=_int(d, "out_mult", where, 1), shard=shard,
                 depthwise=depthwise, **geom)


def build_network(name: str, layers, units: dict | None = None, count: str = "batch", tp: int = 1,
                  description: str = "", source: str = "") -> Network:
    """Validate layers and links, derive the width variables, and check the chain structure."""
    if count not in COUNTS:
        raise ValueError(f"network {name}: count {count!r} is not one of {', '.join(COUNTS)}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp: the tensor-parallel degree must be an integer >= 1, got {tp!r}")
    layers = tuple(x if isinstance(x, Layer) else layer_from_dict(x) for x in layers)
    if not layers:
        raise ValueError(f"network {name}: no layers")
    names = [x.name for x in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"network {name}: duplicate layer names {dup}")
    widths: dict[str, int] = {}
    sharded: set[str] = set()
    for x in layers:
        where = f"network {name}, layer {x.name!r}"
        if x.out_var is not None and not (x.depthwise and x.out_var in widths):
            if x.out_width % x.out_mult:
                raise ValueError(f"{where}: output width {x.out_width} is not a multiple of "
                                 f"out_mult {x.out_mult}")
            w = x.out_width // x.out_mult
            if widths.setdefault(x.out_var, w) != w:
                raise ValueError(f"{where}: output width {w} of variable {x.out_var!r} disagrees with "
                                 f"{widths[x.out_var]} set by an earlier layer")
        if x.in_var is not None:
            if x.in_var not in widths:
                raise ValueError(f"{where}: input variable {x.in_var!r} is not the output of an "
                                 "earlier layer")
            if x.in_width != x.in_mult * widths[x.in_var]:
                raise ValueError(f"{where}: input width {x.in_width} != in_mult {x.in_mult} x width "
                                 f"{widths[x.in_var]} of {x.in_var!r}")
        if tp > 1 and x.shard is not None:
            var = x.out_var if x.shard == "out" else x.in_var
            if var is not None:
                sharded.add(var)
        try:
            layer_shape(x, 1, "fp16", tp=tp)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    units = dict(units or {})
    bad = set(units) - set(widths)
    if bad:
        raise ValueError(f"network {name}: units given for unknown width variables {sorted(bad)}")
    variables = []
    for v, w in widths.items():
        u = units.get(v, 1)
        unit, shard_unit = (u, u) if isinstance(u, int) else (u.get("unit", 1), u.get("shard_unit", 1))
        for key, val in (("unit", unit), ("shard_unit", shard_unit)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"network {name}: {key} of {v!r} must be an integer >= 1, got {val!r}")
        if w % unit:
            raise ValueError(f"network {name}: width {w} of {v!r} is not a multiple of its unit {unit}")
        if v in sharded and w % (tp * shard_unit):
            raise ValueError(f"tp: width {w} of {v!r} does not split into {tp} shards of whole "
                             f"{shard_unit}-wide units")
        variables.append(WidthVar(v, w, unit, shard_unit, v in sharded))
    net = Network(name=name, layers=layers, variables=tuple(variables), count=count, tp=tp,
                  description=description, source=source)
    segments(net)     # raises if the links are not chains
    return net


def segments(net: Network) -> tuple[tuple[str, ...], ...]:
    """The width variables as disjoint paths: consecutive variables share layers, others do not.

    Raises ValueError when a variable links to three others or the links close a cycle.
    """
    adj: dict[str, set[str]] = {v.name: set() for v in net.variables}
    for x in net.layers:
        if x.in_var is not None and x.out_var is not None and x.in_var != x.out_var:
            adj[x.in_var].add(x.out_var)
            adj[x.out_var].add(x.in_var)
    for v, nb in adj.items():
        if len(nb) > 2:
            raise ValueError(f"network {net.name}: width {v!r} links to {sorted(nb)}; the solver needs "
                             "chains (each width shared with at most the previous and the next)")
    order = [v.name for v in net.variables]
    seen: set[str] = set()
    out = []
    for start in order:
        if start in seen or len(adj[start]) == 2:
            continue
        path, prev, cur = [], None, start
        while cur is not None:
            path.append(cur)
            seen.add(cur)
            nxt = [n for n in adj[cur] if n != prev]
            prev, cur = cur, (nxt[0] if nxt else None)
        out.append(tuple(path))
    if len(seen) != len(order):
        cyc = sorted(set(order) - seen)
        raise ValueError(f"network {net.name}: widths {cyc} form a cycle; the solver needs chains")
    return tuple(out)


# ----------------------------------------------------------------------------------------- transformers

_TRANSFORMER_KEYS = {"hidden", "heads", "kv_heads", "head_dim", "ffn", "layers", "vocab", "mlp", "qkv",
                     "lm_head"}


def transformer_layers(cfg: dict) -> tuple[list[dict], dict]:
    """Expand transformer hyper-parameters into linear layers (attention score GEMMs are not included).

    Keys: hidden, heads, ffn, layers, vocab; kv_heads (default heads), head_dim (default hidden/heads),
    mlp ("plain": up/down, "gated": gate/up/down), qkv ("separate" or "fused"), lm_head (bool).
    Prunable per block: the attention width (whole query heads, evenly over key/value groups) and the FFN
    width. The hidden size is the residual stream: fixed.
    """
    unknown = set(cfg) - _TRANSFORMER_KEYS
    if unknown:
        raise ValueError(f"transformer: unknown keys {sorted(unknown)}; "
                         f"allowed: {', '.join(sorted(_TRANSFORMER_KEYS))}")
    where = "transformer"
    h, heads, ffn = _int(cfg, "hidden", where), _int(cfg, "heads", where), _int(cfg, "ffn", where)
    n_layers, vocab = _int(cfg, "layers", where), _int(cfg, "vocab", where)
    kv = _int(cfg, "kv_heads", where, heads)
    dh = _int(cfg, "head_dim", where, h // heads if h % heads == 0 else None)
    if heads % kv:
        raise ValueError(f"transformer: heads ({heads}) must be a multiple of kv_heads ({kv})")
    mlp, qkv = cfg.get("mlp", "plain"), cfg.get("qkv", "separate")
    if mlp not in ("plain", "gated"):
        raise ValueError(f"transformer: mlp must be 'plain' or 'gated', got {mlp!r}")
    if qkv not in ("separate", "fused"):
        raise ValueError(f"transformer: qkv must be 'separate' or 'fused', got {qkv!r}")
    mha = kv == heads
    if qkv == "fused" and not mha:
        raise ValueError("transformer: a fused qkv projection is supported only with kv_heads == heads")
    q = heads * dh
    layers, units = [], {}
    for i in range(n_layers):
        p, a, f = f"blocks.{i}", f"blocks.{i}.attn", f"blocks.{i}.ffn"
        if qkv == "fused":
            layers.append(dict(name=f"{p}.qkv_proj", op="gemm", k=h, n=3 * q, out=a, out_mult=3, shard="out"))
        else:
            layers.append(dict(name=f"{p}.q_proj", op="gemm", k=h, n=q, out=a, shard="out"))
            for nm in ("k_proj", "v_proj"):
                layers.append(dict(name=f"{p}.{nm}", op="gemm", k=h, n=kv * dh, shard="out",
                                   **({"out": a} if mha else {})))
        layers.append(dict(name=f"{p}.o_proj", op="gemm", k=q, n=h, **{"in": a}, shard="in"))
        ups = ("gate_proj", "up_proj") if mlp == "gated" else ("up_proj",)
        for nm in ups:
            layers.append(dict(name=f"{p}.{nm}", op="gemm", k=h, n=ffn, out=f, shard="out"))
        layers.append(dict(name=f"{p}.down_proj", op="gemm", k=ffn, n=h, **{"in": f}, shard="in"))
        # whole heads per shard; under GQA whole heads in every key/value group
        units[a] = {"unit": dh * (1 if mha else kv), "shard_unit": dh}
    if cfg.get("lm_head", True):
        layers.append(dict(name="lm_head", op="gemm", k=h, n=vocab, shard="out"))
    return layers, units


# ----------------------------------------------------------------------------------------- loading


def network_from_dict(d: dict, tp: int = 1, source: str = "") -> Network:
    if not isinstance(d, dict):
        raise ValueError("network: expected an object with 'layers' or 'transformer', "
                         f"got {type(d).__name__}")
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise ValueError(f"network: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    name = d.get("name", "network")
    if ("layers" in d) == ("transformer" in d):
        raise ValueError(f"network {name}: give exactly one of 'layers' (a list) or 'transformer' (a table)")
    units = dict(d.get("units", {}))
    if "transformer" in d:
        layers, t_units = transformer_layers(d["transformer"])
        units = t_units | units
        count = d.get("count", "tokens")
    else:
        layers = d["layers"]
        if not isinstance(layers, list):
            raise ValueError(f"network {name}: 'layers' must be a list")
        count = d.get("count", "batch")
    return build_network(name, layers, units=units, count=count, tp=tp, description=d.get("description", ""),
                         source=source)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.cache
def _preset_files() -> dict[str, str]:
    root = resources.files("wavemodel").joinpath("data/networks")
    return {p.name[:-5]: p.name for p in root.iterdir() if p.name.endswith(".json")}


def presets() -> list[str]:
    """Names of the shipped network presets."""
    return sorted(_preset_files())


@functools.cache
def _preset_dict(name: str) -> dict:
    text = resources.files("wavemodel").joinpath(f"data/networks/{_preset_files()[name]}").read_text()
    return json.loads(text)


def read_network_file(path: str | Path) -> dict:
    """Parse a network file: JSON always, YAML when PyYAML is installed."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"network: reading {path.name} needs PyYAML (pip install pyyaml); "
                             "or give the network as JSON") from None
        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"network: {path.name} is not valid JSON: {e}") from None


def load_network(name: str | Path | Network, tp: int = 1) -> Network:
    """A preset by name (``presets()``; "ResNet-50" matches "resnet50") or a JSON/YAML layer-list file."""
    if isinstance(name, Network):
        if tp != 1 and tp != name.tp:
            raise ValueError("tp: pass the tensor-parallel degree when building the network")
        return name
    key = {_normal(p): p for p in presets()}.get(_normal(str(name)))
    if key is not None:
        return network_from_dict(_preset_dict(key), tp=tp, source=f"preset {key}")
    path = Path(name)
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ValueError(f"network: file {str(path)!r} does not exist")
        return network_from_dict(read_network_file(path), tp=tp, source=str(path))
    raise ValueError(f"network: unknown network {name!r}; presets: {', '.join(presets())}, "
                     "or a path to a .json/.yaml layer list")


# ----------------------------------------------------------------------------------------- torch


def from_torch(module, example_input, name: str = "torch-module", count: str = "batch") -> Network:
    """Walk a ``torch.nn.Module``'s Linear and Conv2d layers (in call order, by forward hooks).

    Links are guessed as a plain chain: a layer's input width is linked to the previous layer's output
    when they agree (``in_mult`` when a flatten multiplies it); the last layer's output and any width that
    does not chain stay fixed. Residual ties are not detected: edit the layer list (``network_to_dict``)
    to fix widths that a skip connection adds to. PyTorch is imported here only.
    """
    import torch  # noqa: F401  (optional dependency)

    seen: list[tuple[str, object, tuple]] = []
    names = {m: n for n, m in module.named_modules()}
    hooks = []

    def hook(mod, inputs, _out):
        seen.append((names.get(mod, type(mod).__name__), mod, tuple(inputs[0].shape)))

    for mod in module.modules():
        if type(mod).__name__ in ("Linear", "Conv2d"):
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        for hk in hooks:
            hk.remove()
    if not seen:
        raise ValueError("from_torch: the module ran no Linear or Conv2d layer")
    layers: list[dict] = []
    used: set[str] = set()
    for i, (lname, mod, in_shape) in enumerate(seen):
        lname = lname or f"layer{i}"
        if lname in used:                      # a module called twice is two layers
            lname = f"{lname}#{i}"
        used.add(lname)
        if type(mod).__name__ == "Linear":
            d = dict(name=lname, op="gemm", k=int(mod.in_features), n=int(mod.out_features))
        else:
            if tuple(mod.padding) != (mod.padding[0],) * 2 or isinstance(mod.padding, str):
                raise ValueError(f"from_torch: {lname}: asymmetric or string padding is not supported")
            groups = int(mod.groups)
            cin, cout = int(mod.in_channels), int(mod.out_channels)
            if groups not in (1, cin) or (groups > 1 and cout != cin):
                raise ValueError(f"from_torch: {lname}: only groups=1 and depthwise convs are supported")
            d = dict(name=lname, op="conv", c=int(mod.in_channels), k=int(mod.out_channels),
                     h=int(in_shape[2]), w=int(in_shape[3]), r=int(mod.kernel_size[0]),
                     s=int(mod.kernel_size[1]),
                     stride=int(mod.stride[0]), padding=int(mod.padding[0]), dilation=int(mod.dilation[0]))
            if groups > 1:
                d["groups"] = "depthwise"
        layers.append(d)
    # chain links: layer i's output is a variable when the next layer reads it
    for prev, cur in zip(layers, layers[1:], strict=False):
        pw = prev["n"] if prev["op"] == "gemm" else prev["k"]
        cw = cur["k"] if cur["op"] == "gemm" else cur["c"]
        if cw % pw == 0 and (cur["op"] == "gemm" or cw == pw):
            prev["out"] = prev.get("out", prev["name"])
            cur["in"] = prev["out"]
            if cw != pw:
                cur["in_mult"] = cw // pw
            if cur.get("groups") == "depthwise":
                cur["out"] = cur["in"]
    return build_network(name, layers, count=count)


def network_to_dict(net: Network) -> dict:
    """The layer-list form of ``net`` (round-trips through ``network_from_dict``; tp is not stored)."""
    layers = []
    for x in net.layers:
        d: dict = {"name": x.name, "op": x.op}
        if x.op == "gemm":
            d |= {"k": x.in_width, "n": x.out_width}
        else:
            d |= {"c": x.in_width, "h": x.h, "w": x.w, "k": x.out_width, "r": x.r, "s": x.s,
                  "stride": x.stride, "padding": x.padding, "dilation": x.dilation}
            if x.depthwise:
                d["groups"] = "depthwise"
        for key, val, default in (("in", x.in_var, None), ("out", x.out_var, None), ("in_mult", x.in_mult, 1),
                                  ("out_mult", x.out_mult, 1), ("shard", x.shard, None)):
            if val != default:
                d[key] = val
        layers.append(d)
    units = {v.name: {"unit": v.unit, "shard_unit": v.shard_unit} for v in net.variables
             if (v.unit, v.shard_unit) != (1, 1)}
    out = {"name": net.name, "count": net.count, "layers": layers}
    if units:
        out["units"] = units
    if net.description:
        out["description"] = net.description
    return out


def check_count(count, net: Network) -> int:
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"{net.count}: must be an integer >= 1, got {count!r}")
    return int(count)


def transformer_config(name: str | dict) -> dict:
    """The hyper-parameters of a transformer preset (or a given dict, checked), defaults filled in."""
    if isinstance(name, dict):
        cfg = dict(name)
    else:
        key = {_normal(p): p for p in presets()}.get(_normal(str(name)))
        d = _preset_dict(key) if key else None
        if d is None or "transformer" not in d:
            names = [p for p in presets() if "transformer" in _preset_dict(p)]
            raise ValueError(f"model: {name!r} is not a transformer preset; allowed values: "
                             f"{', '.join(names)}, or a dict of hidden, heads, ffn, layers, vocab")
        cfg = dict(d["transformer"], name=d["name"])
    name = cfg.pop("name", "transformer")
    transformer_layers(cfg)          # validates
    cfg.setdefault("kv_heads", cfg["heads"])
    cfg.setdefault("head_dim", cfg["hidden"] // cfg["heads"])
    cfg.setdefault("mlp", "plain")
    cfg.setdefault("qkv", "separate")
    cfg.setdefault("lm_head", True)
    return cfg | {"name": name}
