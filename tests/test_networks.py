"""Network presets, layer-list files, width links and the chain structure the solver needs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import networks as N


def _macs(net: N.Network, count: int = 1) -> float:
    total = 0.0
    for x in net.layers:
        total += float(N.layer_shape(x, count, "fp16", tp=net.tp).flops) / 2
    return total


# ------------------------------------------------------------------------------------------ presets


def test_presets_listed_and_load():
    names = N.presets()
    for want in ("resnet50", "vgg16", "mobilenetv2", "bert-base", "bert-large", "gpt2", "llama-7b",
                 "llama-70b", "llama-7b-mlp"):
        assert want in names
    for name in names:
        net = N.load_network(name)
        assert net.layers and net.name == name
        N.segments(net)


@pytest.mark.parametrize("name, layers, gmacs", [
    # published multiply-accumulate counts at 224x224, batch 1 (torchvision's model tables)
    ("resnet50", 54, 4.09), ("vgg16", 16, 15.47), ("mobilenetv2", 53, 0.30),
])
def test_cnn_presets_match_published_size(name, layers, gmacs):
    net = N.load_network(name)
    assert len(net.layers) == layers
    assert _macs(net) / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_resnet50_links():
    net = N.load_network("ResNet-50")            # names are matched loosely
    by = {x.name: x for x in net.layers}
    # bottleneck inner widths prunable, block outputs (residual) fixed
    assert by["layer1.0.conv1"].out_var == "layer1.0.a"
    assert by["layer1.0.conv2"].in_var == "layer1.0.a" and by["layer1.0.conv2"].out_var == "layer1.0.b"
    assert by["layer1.0.conv3"].in_var == "layer1.0.b" and by["layer1.0.conv3"].out_var is None
    assert by["layer4.2.conv3"].out_width == 2048
    assert net.var("layer3.1.b").width == 256
    # 16 blocks: 15 independent two-width chains and the stem chained to the first block
    segs = N.segments(net)
    assert len(segs) == 16
    assert ("stem", "layer1.0.a", "layer1.0.b") in segs
    assert ("layer2.0.a", "layer2.0.b") in segs


def test_vgg16_is_one_chain_with_flatten():
    net = N.load_network("vgg16")
    assert len(N.segments(net)) == 1 and len(N.segments(net)[0]) == 15
    fc6 = next(x for x in net.layers if x.name == "fc6")
    assert fc6.in_var == "conv5_3" and fc6.in_mult == 49 and fc6.in_width == 512 * 49
    assert N.layer_shape(fc6, 8, "fp16", in_width=256).k == 256 * 49


def test_mobilenetv2_depthwise_is_one_width():
    net = N.load_network("mobilenetv2")
    dw = next(x for x in net.layers if x.name == "features.2.dw")
    assert dw.depthwise and dw.in_var == dw.out_var == "features.2.hidden"
    shape = N.layer_shape(dw, 4, "fp16", in_width=np.array([48, 96]))
    assert list(shape.groups) == [48, 96] and list(shape.c) == [48, 96] and list(shape.k) == [48, 96]
    assert shape.stride == 2 and shape.h == 112


def test_transformer_presets():
    llama = N.load_network("llama-7b")
    assert llama.count == "tokens" and len(llama.layers) == 32 * 7 + 1
    gate = next(x for x in llama.layers if x.name == "blocks.0.gate_proj")
    up = next(x for x in llama.layers if x.name == "blocks.0.up_proj")
    down = next(x for x in llama.layers if x.name == "blocks.0.down_proj")
    assert gate.out_var == up.out_var == down.in_var == "blocks.0.ffn"
    assert llama.var("blocks.0.attn").unit == 128              # whole heads
    gpt2 = N.load_network("gpt2")
    qkv = next(x for x in gpt2.layers if x.name == "blocks.0.qkv_proj")
    assert qkv.out_mult == 3 and qkv.out_width == 3 * 768 and gpt2.var("blocks.0.attn").width == 768
    lm = next(x for x in gpt2.layers if x.name == "lm_head")
    assert lm.out_width == 50257 and lm.out_var is None
    mlp = N.load_network("llama-7b-mlp")
    assert [x.name for x in mlp.layers] == ["gate_proj", "up_proj", "down_proj"]
    assert mlp.original_widths == {"ffn": 11008}


def test_llama70b_gqa_units_and_tensor_parallel():
    net = N.load_network("llama-70b", tp=8)
    attn = net.var("blocks.0.attn")
    assert (attn.width, attn.unit, attn.shard_unit, attn.sharded) == (8192, 8 * 128, 128, True)
    k_proj = next(x for x in net.layers if x.name == "blocks.0.k_proj")
    assert k_proj.out_var is None and k_proj.out_width == 1024          # 8 key/value heads: fixed
    q = next(x for x in net.layers if x.name == "blocks.0.q_proj")
    o = next(x for x in net.layers if x.name == "blocks.0.o_proj")
    assert N.layer_shape(q, 16, "fp16", tp=8).n == 1024                  # column parallel: N / 8
    assert N.layer_shape(o, 16, "fp16", tp=8).k == 1024                  # row parallel: K / 8
    assert N.layer_shape(o, 16, "fp16", tp=8).n == 8192
    lm = next(x for x in net.layers if x.name == "lm_head")
    assert N.layer_shape(lm, 16, "fp16", tp=8).n == 4000
    with pytest.raises(ValueError, match="tp"):
        N.load_network("llama-7b", tp=3)                                 # 11008 / 3 is not whole


def test_transformer_config():
    cfg = N.transformer_config("llama-70b")
    assert (cfg["hidden"], cfg["kv_heads"], cfg["head_dim"], cfg["mlp"]) == (8192, 8, 128, "gated")
    with pytest.raises(ValueError, match="transformer preset"):
        N.transformer_config("resnet50")


# ------------------------------------------------------------------------------------------ files


CHAIN = {
    "name": "tiny", "count": "batch",
    "layers": [
        {"name": "fc1", "op": "gemm", "k": 64, "n": 128, "out": "h1"},
        {"name": "fc2", "op": "gemm", "k": 128, "n": 96, "in": "h1", "out": "h2"},
        {"name": "fc3", "op": "gemm", "k": 96, "n": 10, "in": "h2"},
    ],
}


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(CHAIN))
    net = N.load_network(str(path))
    assert net.original_widths == {"h1": 128, "h2": 96}
    assert N.segments(net) == (("h1", "h2"),)
    again = N.network_from_dict(N.network_to_dict(net))
    assert again.layers == net.layers and again.variables == net.variables


def test_yaml_file(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(CHAIN))
    assert N.load_network(path).original_widths == {"h1": 128, "h2": 96}


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        N.load_network(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="presets: .*resnet50"):
        N.load_network("resnet51")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        N.load_network(str(bad))


def _with(layers, **top):
    return {"name": "t", "layers": layers} | top


@pytest.mark.parametrize("d, match", [
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 8, "in": "x"}]), "not the output of an earlier"),
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 16, "out": "x"},
            {"name": "b", "op": "gemm", "k": 8, "n": 8, "in": "x"}]), "input width 8 != in_mult"),
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 16, "out": "x"},
            {"name": "b", "op": "gemm", "k": 8, "n": 32, "out": "x"}]), "disagrees"),
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 8}, {"name": "a", "op": "gemm", "k": 8, "n": 8}]),
     "duplicate layer names"),
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 8, "colour": 1}]), "unknown keys"),
    (_with([{"name": "a", "op": "matmul", "k": 8, "n": 8}]), "op 'matmul'"),
    (_with([{"name": "a", "op": "gemm", "k": 0, "n": 8}]), "k must be an integer"),
    (_with([{"name": "a", "op": "conv", "c": 8, "k": 16, "h": 8, "r": 3, "groups": "depthwise"}]),
     "depthwise"),
    (_with([{"name": "a", "op": "conv", "c": 8, "k": 16, "h": 2, "r": 5}]), "empty"),
    (_with([{"name": "a", "op": "gemm", "k": 8, "n": 8}], count="images"), "count"),
    ({"name": "t"}, "exactly one of 'layers'"),
])
def test_bad_layer_lists_raise(d, match):
    with pytest.raises(ValueError, match=match):
        N.network_from_dict(d)


def test_links_must_be_chains():
    star = _with([
        {"name": "a", "op": "gemm", "k": 8, "n": 16, "out": "x"},
        {"name": "b", "op": "gemm", "k": 16, "n": 16, "in": "x", "out": "y"},
        {"name": "c", "op": "gemm", "k": 16, "n": 16, "in": "x", "out": "z"},
        {"name": "d", "op": "gemm", "k": 16, "n": 16, "in": "x", "out": "w"},
    ])
    with pytest.raises(ValueError, match="needs chains"):
        N.network_from_dict(star)
    cycle = _with([
        {"name": "a", "op": "gemm", "k": 8, "n": 16, "out": "x"},
        {"name": "b", "op": "gemm", "k": 16, "n": 16, "in": "x", "out": "y"},
        {"name": "c", "op": "gemm", "k": 16, "n": 16, "in": "y", "out": "z"},
        {"name": "d", "op": "gemm", "k": 16, "n": 16, "in": "z", "out": "x"},
    ])
    with pytest.raises(ValueError, match="cycle"):
        N.network_from_dict(cycle)


def test_tied_outputs_share_a_width():
    net = N.network_from_dict(_with([
        {"name": "gate", "op": "gemm", "k": 32, "n": 64, "out": "f"},
        {"name": "up", "op": "gemm", "k": 32, "n": 64, "out": "f"},
        {"name": "down", "op": "gemm", "k": 64, "n": 32, "in": "f"},
    ]))
    assert net.original_widths == {"f": 64} and N.segments(net) == (("f",),)


def test_layer_shapes_follow_widths():
    net = N.network_from_dict(CHAIN)
    fc2 = net.layers[1]
    g = N.layer_shape(fc2, 32, "bf16", in_width=64, out_width=np.array([8, 16]))
    assert isinstance(g, wm.Gemm) and g.m == 32 and g.k == 64 and list(g.n) == [8, 16] and g.dtype == "bf16"
    assert N.layer_shape(fc2, 32, "fp16").n == 96


def test_from_torch_walks_linear_and_conv():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.Flatten(),
                          nn.Linear(32 * 8 * 8, 64), nn.Linear(64, 10))
    net = N.from_torch(model, torch.zeros(1, 3, 8, 8), name="toy")
    assert [x.op for x in net.layers] == ["conv", "conv", "conv", "gemm", "gemm"]
    assert net.layers[1].depthwise and net.layers[3].in_mult == 64
    assert net.layers[-1].out_var is None
    N.segments(net)


class _FakeModule:
    """Just enough of torch.nn.Module for ``from_torch``: hooks, named_modules, a forward pass."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)
        self._hooks = []

    def register_forward_hook(self, fn):
        self._hooks.append(fn)
        owner = self

        class Handle:
            def remove(self):
                owner._hooks.remove(fn)

        return Handle()

    def __call__(self, x):
        for fn in self._hooks:
            fn(self, (x,), None)
        return x


class Linear(_FakeModule):
    pass


class Conv2d(_FakeModule):
    pass


class _FakeTensor:
    def __init__(self, shape):
        self.shape = shape


def test_from_torch_with_a_fake_torch(monkeypatch):
    import contextlib
    import sys
    import types

    fake = types.ModuleType("torch")
    fake.no_grad = contextlib.nullcontext
    monkeypatch.setitem(sys.modules, "torch", fake)
    conv = Conv2d(in_channels=3, out_channels=16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
                  dilation=(1, 1), groups=1)
    dw = Conv2d(in_channels=16, out_channels=16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1),
                dilation=(1, 1), groups=16)
    fc1 = Linear(in_features=16 * 4 * 4, out_features=32)
    fc2 = Linear(in_features=32, out_features=10)

    class Model:
        def named_modules(self):
            return [("", self), ("conv", conv), ("dw", dw), ("fc1", fc1), ("fc2", fc2)]

        def modules(self):
            return [m for _, m in self.named_modules()]

        def __call__(self, x):
            conv(_FakeTensor((1, 3, 8, 8)))
            dw(_FakeTensor((1, 16, 8, 8)))
            fc1(_FakeTensor((1, 256)))
            fc2(_FakeTensor((1, 32)))
            fc2(_FakeTensor((1, 32)))            # called twice: two layers

    net = N.from_torch(Model(), None, name="fake")
    assert [x.name for x in net.layers] == ["conv", "dw", "fc1", "fc2", "fc2#4"]
    conv_l, dw_l, fc1_l = net.layers[:3]
    assert conv_l.out_var == "conv" and conv_l.h == 8 and conv_l.padding == 1
    assert dw_l.depthwise and dw_l.in_var == dw_l.out_var == "conv" and dw_l.stride == 2
    assert fc1_l.in_var == "conv" and fc1_l.in_mult == 16
    assert net.layers[-1].out_var is None and not conv._hooks       # hooks removed
