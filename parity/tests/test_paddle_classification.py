"""PaddleClas classifiers against paddle itself (the registry-wide sweep in test_models.py covers
dygraph parity of every model): the static ("fluid") layout on files paddle writes, the static name
tables against ppcls's real nets, Paddle's pooling and activation conventions op by op, odd input
sizes, a planted error, and the preset against PaddleClas's own preprocessing code."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

MODELS = [n for n in registry.names()  # ppcls classifiers; the ppdet / paddleseg families test their own
          if registry.get(n).source_format == "paddle-checkpoint" and registry.get(n).task == "classification"]
SMALL = (96, 96)  # network input of the checks that need every layer pair, not the photograph's detail


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


# ------------------------------------------------------------------------- static name tables

@pytest.mark.parametrize("name", MODELS)
def test_static_names_fit_ppcls_s_net(name):
    """The family's static table (or the parameters' own names) covers ppcls's state dict one to one."""
    spec = registry.get(name)
    net = ppcls.build(spec.source_model, kwargs=spec.get_model_kwargs)
    names = ppcls.static_names(name, net)
    assert sorted(names.values()) == sorted(net.state_dict())
    assert len(names) == len(net.state_dict())


# ------------------------------------------------------------- fluid layout, written by paddle

_SAVE_VARS = """
import json, os, sys
os.environ["FLAGS_enable_pir_api"] = "0"  # the legacy program IR writes one file per variable
import numpy as np, paddle
src, table, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
state = paddle.load(src)
paddle.enable_static()
main = paddle.static.Program()
with paddle.static.program_guard(main, paddle.static.Program()):
    for key, name in table.items():
        paddle.static.create_global_var(list(state[key].shape), 0.0, "float32", persistable=True, name=name)
exe = paddle.static.Executor(paddle.CPUPlace())
scope = paddle.static.global_scope()
for key, name in table.items():
    scope.var(name).get_tensor().set(np.asarray(state[key]), paddle.CPUPlace())
paddle.static.save_vars(exe, out, main_program=main, vars=[main.global_block().var(n) for n in table.values()])
"""


def write_fluid_with_paddle(pdparams: Path, table: dict[str, str], out: Path) -> Path:
    """The seeded .pdparams re-saved by paddle's legacy ``save_vars`` under the static names: a
    checkpoint directory as the PaddleX .tar links hold (paddle runs in a subprocess: static mode
    and the IR flag are process-wide)."""
    (out.parent / "table.json").write_text(json.dumps(table))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", GLOG_minloglevel="2")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_SAVE_VARS), str(pdparams),
                           str(out.parent / "table.json"), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_generated_static_names_are_ppcls_s_own():
    """MobileNetV2's ppcls net names its parameters with PaddleClas 1.x's static names: the family's
    generated table equals them, name for name (the oracle reads the real ``.name``s, not the table)."""
    from converters.paddle import mobilenet
    net = ppcls.build("MobileNetV2")
    assert {k: t.name for k, t in net.state_dict().items()} == mobilenet.fluid_names(2)


# one model per family (CI's); input sizes: SMALL keeps torch's float64 floor run cheap (depthwise
# convs run one group at a time); DenseNet at 97x97 sends odd maps through its pools; HRNet's sides
# must be multiples of 32 (64x96: every fusion upsamples a rectangle); AlexNet takes 224 only
FLUID_CASES = [("ResNet18", SMALL), ("ResNet50_vd", SMALL), ("MobileNetV1", SMALL), ("MobileNetV2", SMALL),
               ("MobileNetV3_small", SMALL), ("ShuffleNetV2", SMALL), ("DenseNet121", (97, 97)),
               ("DarkNet53", SMALL), ("AlexNet", None), ("HRNet_W18_C", (64, 96)), ("Xception41", SMALL)]


def test_fluid_cases_cover_every_family():
    assert {registry.get(n).family for n, _ in FLUID_CASES} == {registry.get(n).family for n in MODELS}


@pytest.mark.parametrize("name,size", FLUID_CASES)
def test_fluid_layout_converts_to_the_same_weights_and_passes(converted, name, size, tmp_path):
    """Paddle's own save_vars writes the directory (a variable per file at its name: Xception's
    "/"-scoped names as nested folders); it converts to the dygraph conversion's weights bit for
    bit and passes verify (the oracle loads it with paddle.load, pairs layers by static name)."""
    ref = converted(name)
    net = ppcls.build(ref.spec.source_model)
    table = {key: static for static, key in ppcls.static_names(name, net).items()}
    d = write_fluid_with_paddle(ref.source, table, tmp_path / f"{name}_pretrained")
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == sorted(table.values())
    fluid = converters.convert(name, weights=d)
    assert fluid.layout == "fluid" and fluid.state_dict.keys() == ref.state_dict.keys()
    different = [k for k in ref.state_dict if not torch.equal(fluid.state_dict[k], ref.state_dict[k])]
    assert not different, different[:5]
    report = verify(name, result=fluid, images=sample_photos()[:1], size=size)
    assert report.passed, report.layers.first_divergent or report.topk
    layers = {r.target.rpartition(".")[0] for r in fluid.mapping if r.status == "mapped"}
    assert report.source["layout"] == "fluid" and len(report.layers.diffs) == len(layers)


def test_seeded_sources_are_reproducible(tmp_path):
    """Two builds of one seeded source are byte-identical (paddle.seed, fixed calibration photos),
    which is why an SSLD twin's seeded net is its plain twin's and only the plain one runs in CI."""
    from converters.paddle import seeded
    spec = registry.get("MobileNetV1")
    a, b = (seeded.build(spec, 3, tmp_path / f"{k}.pdparams") for k in "ab")
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdparams", "b.pdparams"]  # no temp files left


# ------------------------------------------------------------------- conventions, op by op

@pytest.mark.parametrize("hw", [(56, 56), (57, 57), (9, 14), (7, 7)])
def test_vd_avg_pool_equals_paddle_s(hw):
    """ppcls's vd shortcut pool, AvgPool2D(2, stride 2, padding "SAME", ceil_mode, exclusive), is our
    AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), exactly, on even and odd sizes."""
    paddle = _paddle()
    x = np.random.default_rng(0).standard_normal((2, 3, *hw)).astype(np.float32)
    theirs = paddle.nn.AvgPool2D(kernel_size=2, stride=2, padding="SAME", ceil_mode=True)(paddle.to_tensor(x)).numpy()
    pool = registry.get("ResNet50_vd").build().layer2[0].downsample[0]
    with torch.no_grad():
        ours = pool(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)  # same sums, same order: bit for bit


def test_paddle_activations_and_inference_dropout_equal_ours():
    """MobileNetV3's Paddle ops against paddle: hard_sigmoid(slope 0.2, offset 0.5) (torch's
    hardsigmoid is another function), hard_swish, and Dropout(0.2, "downscale_in_infer") in eval
    (x * 0.8, where torch's Dropout is the identity)."""
    from converters.arch.paddle_ops import DownscaleInInfer, HardSigmoid, HardSwish
    paddle = _paddle()
    x = np.concatenate([np.linspace(-8, 8, 4001, dtype=np.float32),  # every kink, plus random values
                        np.random.default_rng(0).standard_normal(20000).astype(np.float32) * 4]).reshape(1, 1, 1, -1)
    t, p = torch.from_numpy(x), paddle.to_tensor(x)
    drop = paddle.nn.Dropout(p=0.2, mode="downscale_in_infer")
    drop.eval()
    for ours, theirs in ((HardSigmoid(0.2, 0.5), paddle.nn.functional.hardsigmoid(p, slope=0.2, offset=0.5)),
                         (HardSwish(), paddle.nn.Hardswish()(p)), (DownscaleInInfer(0.2), drop(p))):
        assert np.array_equal(ours(t).numpy(), theirs.numpy())  # same float32 operations, same order
    assert np.abs(torch.nn.functional.hardsigmoid(t).numpy() - HardSigmoid()(t).numpy()).max() > 0.05


@pytest.mark.parametrize("act,eps", [(None, 1e-3), ("relu", 1e-3), ("relu", 1e-5)])
def test_batchnorm_act_equals_paddle_s_batchnorm_with_act(act, eps):
    """paddle.nn.BatchNorm(act=...) in eval, whose output is after the activation (DarkNet53,
    DenseNet, ShuffleNetV2, Xception), against our BatchNormAct on the same four tensors. Not bit for
    bit: paddle's kernel folds scale / sqrt(var + eps) in another order, so within 4 float32 ulps of
    the output's scale; the ReLU must cut at the same places."""
    from converters.arch.paddle_ops import BatchNormAct
    paddle = _paddle()
    rng, c = np.random.default_rng(0), 16
    w, b, m = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    v = (rng.random(c) + 0.2).astype(np.float32)
    x = (rng.standard_normal((2, c, 9, 7)) * 3).astype(np.float32)
    theirs = paddle.nn.BatchNorm(c, act=act, epsilon=eps)
    theirs.set_state_dict({"weight": w, "bias": b, "_mean": m, "_variance": v})
    theirs.eval()
    ours = BatchNormAct(c, torch.nn.ReLU() if act else None, eps=eps).eval()
    with torch.no_grad():
        for t, a in ((ours.weight, w), (ours.bias, b), (ours.running_mean, m), (ours.running_var, v)):
            t.copy_(torch.from_numpy(a))
        got = ours(torch.from_numpy(x)).numpy()
    want = theirs(paddle.to_tensor(x)).numpy()
    assert ((want == 0).mean() > 0.2) == bool(act) and np.array_equal(want == 0, got == 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(want).max())


@pytest.mark.parametrize("naive,first", [("torch_hardsigmoid", "backbone.blocks.0.project.conv"),
                                         ("torch_dropout", "fc")])
def test_naive_activation_choices_diverge_where_they_act(converted, naive, first):
    """A port using torch's hardsigmoid in the SE gates, or torch's Dropout (identity in eval), fails
    parity at the first layer after the change (MobileNetV3_small: block 0 has the first SE)."""
    result = converted("MobileNetV3_small")
    bad = copy.deepcopy(result.module)
    if naive == "torch_dropout":
        bad.dropout = torch.nn.Dropout(0.2).eval()  # identity at inference
    else:
        for block in bad.backbone.blocks:
            if block.se is not None:
                block.se.gate = torch.nn.Hardsigmoid().eval()
    r = verify("MobileNetV3_small", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1],
               size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == first


@pytest.mark.parametrize("name", ["ResNet50_vd", "ShuffleNetV2"])
def test_odd_input_size(converted, name):
    """At 225x225 odd maps meet every padded or strided op: ResNet50_vd's stage-2..4 shortcut pools
    (57, 29, 15: ceil mode, exclusive corner windows), ShuffleNetV2's stem, max pool and stride-2
    blocks (113, 57, 29, 15: padding and floor rounding), against paddle end to end."""
    report = verify(name, result=converted(name), images=sample_photos()[:1], size=(225, 225))
    assert report.passed, report.layers.first_divergent or report.topk
    assert report.size == (225, 225)


def test_a_planted_error_is_the_first_divergence(converted):
    result = converted("ResNet18")
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.layer3[1].conv1.weight.mul_(1.01)
    r = verify("ResNet18", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed and r.layers.first_divergent.name == "layer3.1.conv1"
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])


# ------------------------------------------------------------- preprocessing vs PaddleClas's code

def _paddleclas_deploy_ops():
    """PaddleClas's own deploy/python/preprocess.py (ResizeImage, CropImage, NormalizeImage). The
    installed package's __init__ imports its retrieval predictor (faiss), so the module is loaded
    under a bare package stub, removed again afterwards."""
    _paddle()
    root = Path(list(importlib.util.find_spec("paddleclas").submodule_search_locations)[0])
    saved = {k: sys.modules[k] for k in list(sys.modules) if k == "paddleclas" or k.startswith("paddleclas.")}
    stub = types.ModuleType("paddleclas")
    stub.__path__ = [str(root)]
    sys.modules["paddleclas"] = stub
    try:
        spec = importlib.util.spec_from_file_location("paddleclas_deploy_preprocess", root / "deploy/python/preprocess.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for k in [k for k in sys.modules if k == "paddleclas" or k.startswith("paddleclas.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_preset_equals_paddleclas_s_own_ops_on_the_jpeg_corpus(tmp_path):
    """Bit for bit on every decoded JPEG of the corpus: the eval ops of PaddleClas's ImageNet
    configs (resize_short 256, crop 224, scale 1.0/255.0) against parity/preprocess.py's preset."""
    from parity import preprocess as pp
    from parity.jpegs import CASES, write_case
    ops = _paddleclas_deploy_ops()
    chain = [ops.ResizeImage(resize_short=256), ops.CropImage(size=224),
             ops.NormalizeImage(scale="1.0/255.0", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], order=""),
             ops.ToCHWImage()]
    checked = 0
    for case in CASES:
        rgb = pp.decode(write_case(case, tmp_path), "opencv")
        img = rgb
        for op in chain:
            img = op(img)
        ours = pp.preprocess(rgb, "paddleclas", "mxnet").numpy()
        assert ours.shape == img.shape and np.array_equal(ours, img), case.name
        checked += 1
    assert checked == len(CASES) >= 20
