"""The mapping engine on tiny hand-made modules and numpy source dicts."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from converters.arch.resnet import ResNet
from converters.engine import load_into, map_tensors
from converters.errors import MappingError
from converters.fixups import BGR_TO_RGB_CONV1, TRANSPOSE_LINEAR
from converters.gluon.resnet import V1_50
from converters.rules import Default, Ignore, Rule, bn_rules

BN_DEFAULT = Default(r"^.*num_batches_tracked$", 0, "torch BN step counter")


def _net() -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4), flat=nn.Flatten(),
                                     fc=nn.Linear(4, 2)))


RULES = [
    Rule(r"^c_(weight|bias)$", r"conv.\1", "conv"),
    *bn_rules("b_", "bn.", "bn", names=("gamma", "beta", "moving_mean", "moving_var")),
    Rule(r"^d_(weight|bias)$", r"fc.\1", "dense"),
    Ignore(r"^opt_.*$", "optimizer state, training only"),
]


def _sources(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "c_weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "c_bias": rng.standard_normal(4).astype(np.float32),
        "b_gamma": rng.standard_normal(4).astype(np.float32),
        "b_beta": rng.standard_normal(4).astype(np.float32),
        "b_moving_mean": rng.standard_normal(4).astype(np.float32),
        "b_moving_var": rng.random(4).astype(np.float32) + 0.5,
        "d_weight": rng.standard_normal((2, 4)).astype(np.float32),
        "d_bias": rng.standard_normal(2).astype(np.float32),
        "opt_momentum": rng.standard_normal(7).astype(np.float32),
    }


EXPECTED_TARGET = {"c_weight": "conv.weight", "c_bias": "conv.bias", "b_gamma": "bn.weight",
                   "b_beta": "bn.bias", "b_moving_mean": "bn.running_mean",
                   "b_moving_var": "bn.running_var", "d_weight": "fc.weight", "d_bias": "fc.bias"}


def test_all_mapped_bit_for_bit_with_audit_rows():
    src = _sources()
    state, rows = map_tensors("tiny", src, _net(), RULES, defaults=[BN_DEFAULT])
    assert set(state) == set(_net().state_dict())
    for s, t in EXPECTED_TARGET.items():
        assert state[t].numpy().dtype == src[s].dtype
        assert state[t].numpy().tobytes() == src[s].tobytes(), t
    by_source = {r.source: r for r in rows}
    for s, t in EXPECTED_TARGET.items():
        row = by_source[s]
        assert (row.status, row.target, row.shape, row.dtype) == ("mapped", t, src[s].shape, "float32")
        assert row.rule in [r.pattern for r in RULES] and row.why and row.fixup is None
    assert by_source["c_weight"].rule == r"^c_(weight|bias)$" and by_source["c_weight"].why == "conv"
    assert by_source["b_moving_var"].why == "bn: BN moving variance"
    # the state dict owns its memory: changing the source afterwards does not leak in
    src["c_bias"][:] = 123
    assert not torch.any(state["conv.bias"] == 123)


def test_ignored_rows_carry_the_reason():
    _, rows = map_tensors("tiny", _sources(), _net(), RULES, defaults=[BN_DEFAULT])
    ignored = [r for r in rows if r.status == "ignored"]
    assert len(ignored) == 1
    r = ignored[0]
    assert (r.source, r.target, r.shape, r.rule, r.why) == (
        "opt_momentum", None, (7,), r"^opt_.*$", "optimizer state, training only")
    assert r.to_dict()["shape"] == [7]


def test_default_fills_num_batches_tracked():
    state, rows = map_tensors("tiny", _sources(), _net(), RULES, defaults=[Default(
        r"^.*num_batches_tracked$", 5, "counter")])
    t = state["bn.num_batches_tracked"]
    assert t.dtype == torch.int64 and t.shape == () and int(t) == 5
    (row,) = [r for r in rows if r.status == "default"]
    assert (row.source, row.target, row.shape, row.dtype, row.why) == (
        None, "bn.num_batches_tracked", (), "int64", "counter")


def test_without_default_num_batches_tracked_is_a_problem():
    with pytest.raises(MappingError) as exc:
        map_tensors("tiny", _sources(), _net(), RULES)
    assert exc.value.problems == ["target bn.num_batches_tracked () is not filled by any source tensor"]


def _stem() -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 64, 7, bias=False), bn1=nn.BatchNorm2d(64),
                                     flat=nn.Flatten(), fc=nn.Linear(64, 10)))


def test_all_problems_collected_into_one_error():
    rules = [Rule(r"^conv0_weight$", "conv1.weight", "stem conv"),
             *bn_rules(r"bn0_", "bn1.", "stem BN"),
             Rule(r"^bn0_gamma_copy$", "bn1.weight", "a second source for bn1.weight"),
             Rule(r"^dense_weight$", "fc.weight", "dense")]
    z = np.zeros
    src = {
        "conv0_weight": z((64, 7, 3, 7), np.float32),  # same numel and rank, axes in the wrong order
        "bn0_gamma": z(64, np.float32), "bn0_beta": z(64, np.float32),
        "bn0_running_mean": z(64, np.float32), "bn0_running_var": z(64, np.float32),
        "bn0_gamma_copy": z(64, np.float32),  # two sources onto one target
        "dense_weight": z((10, 64), np.float32),
        "mystery_tensor": z(3, np.float32),  # matched by no rule
        # no source for fc.bias: unfilled target
    }
    with pytest.raises(MappingError) as exc:
        map_tensors("stem", src, _stem(), rules, defaults=[BN_DEFAULT])
    err = exc.value
    assert sorted(err.problems) == sorted([
        "shape mismatch: source conv0_weight (64, 7, 3, 7) -> target conv1.weight (64, 3, 7, 7)",
        "source bn0_gamma_copy and bn0_gamma both map onto target bn1.weight",
        "source mystery_tensor (3,) is matched by no rule",
        "target fc.bias (10,) is not filled by any source tensor",
    ])
    msg = str(err)
    assert "\n" not in msg and msg.startswith("stem: 4 mapping problem(s): ")
    assert all(p in msg for p in err.problems)
    assert err.model == "stem" and err.hint


def test_rule_onto_missing_target_is_reported():
    rules = [r if r.pattern != r"^d_(weight|bias)$" else Rule(r"^d_(weight|bias)$", r"head.\1", "typo")
             for r in RULES]
    with pytest.raises(MappingError) as exc:
        map_tensors("tiny", _sources(), _net(), rules, defaults=[BN_DEFAULT])
    problems = exc.value.problems
    assert r"source d_weight -> head.weight: no such target tensor (rule ^d_(weight|bias)$)" in problems
    assert r"source d_bias -> head.bias: no such target tensor (rule ^d_(weight|bias)$)" in problems
    assert "target fc.weight (2, 4) is not filled by any source tensor" in problems
    assert len(problems) == 4


def test_many_problems_message_stays_one_line_and_counts():
    src = {f"junk{i}": np.zeros(1, np.float32) for i in range(12)}
    with pytest.raises(MappingError) as exc:
        map_tensors("tiny", src, _net(), RULES, defaults=[BN_DEFAULT])
    err = exc.value
    assert len(err.problems) == 12 + 8  # 12 unmatched sources, 8 unfilled targets
    assert "\n" not in str(err) and str(err).endswith("(+12 more)")


# --------------------------------------------------------------------------------------- fix-ups

def _typed() -> nn.Module:
    return nn.ModuleDict({
        "fc": nn.Linear(3, 5, bias=False),  # weight (5, 3)
        "sq": nn.Linear(4, 4, bias=False),  # square: a transpose keeps the shape, changes values
        "emb": nn.Embedding(4, 4),  # 2-D weight, same rank, not a Linear
        "conv": nn.Conv2d(2, 2, 1, bias=False),  # (2, 2, 1, 1)
    })


TYPED_RULES = [Rule(r"^(fc|sq|emb|conv)_w$", r"\1.weight", "weight")]


def _typed_sources() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"fc_w": rng.standard_normal((3, 5)).astype(np.float32),  # Paddle: [in, out]
            "sq_w": rng.standard_normal((4, 4)).astype(np.float32),
            "emb_w": rng.standard_normal((4, 4)).astype(np.float32),
            "conv_w": rng.standard_normal((2, 2, 1, 1)).astype(np.float32)}


def test_transpose_linear_applies_by_layer_type_only():
    src = _typed_sources()
    state, rows = map_tensors("typed", src, _typed(), TYPED_RULES, fixups=[TRANSPOSE_LINEAR])
    assert np.array_equal(state["fc.weight"].numpy(), src["fc_w"].T)
    assert np.array_equal(state["sq.weight"].numpy(), src["sq_w"].T)
    assert np.array_equal(state["emb.weight"].numpy(), src["emb_w"])  # 2-D, but an Embedding
    assert np.array_equal(state["conv.weight"].numpy(), src["conv_w"])
    fix = {r.target: r.fixup for r in rows}
    assert fix == {"fc.weight": "transpose_linear", "sq.weight": "transpose_linear",
                   "emb.weight": None, "conv.weight": None}
    assert state["fc.weight"].is_contiguous()
    row = next(r for r in rows if r.target == "fc.weight")
    assert row.shape == (3, 5)  # the audit row records the source shape


def test_fixup_where_restricts_by_module_path():
    only_sq = dataclasses.replace(TRANSPOSE_LINEAR, where=r"^sq$")
    src = _typed_sources()
    src["fc_w"] = np.ascontiguousarray(src["fc_w"].T)  # already [out, in]
    state, rows = map_tensors("typed", src, _typed(), TYPED_RULES, fixups=[only_sq])
    assert np.array_equal(state["fc.weight"].numpy(), src["fc_w"])
    assert np.array_equal(state["sq.weight"].numpy(), src["sq_w"].T)
    assert {r.target: r.fixup for r in rows}["fc.weight"] is None


def test_fixup_shape_mismatch_names_the_fixup():
    src = _typed_sources()
    src["fc_w"] = np.ascontiguousarray(src["fc_w"].T)  # (5, 3): transposed it no longer fits
    with pytest.raises(MappingError) as exc:
        map_tensors("typed", src, _typed(), TYPED_RULES, fixups=[TRANSPOSE_LINEAR])
    assert exc.value.problems == [
        "shape mismatch: source fc_w (5, 3) after transpose_linear -> target fc.weight (5, 3)"]


def test_two_fixups_on_one_tensor_raise():
    again = dataclasses.replace(TRANSPOSE_LINEAR, name="transpose_again")
    with pytest.raises(ValueError, match="transpose_linear.*transpose_again.*fc.weight"):
        map_tensors("typed", _typed_sources(), _typed(), TYPED_RULES, fixups=[TRANSPOSE_LINEAR, again])


def test_fixup_rejecting_a_source_is_a_collected_problem():
    src = _typed_sources()
    src["fc_w"] = np.zeros((3, 5, 1), np.float32)  # wrong rank for a Linear weight
    src["extra"] = np.zeros(1, np.float32)  # a second, independent problem
    with pytest.raises(MappingError) as exc:
        map_tensors("typed", src, _typed(), TYPED_RULES, fixups=[TRANSPOSE_LINEAR])
    assert len(exc.value.problems) == 2


def _convs() -> nn.Module:
    mods = {"conv1": nn.Conv2d(3, 2, 1, bias=False), "conv2": nn.Conv2d(3, 2, 1, bias=False),
            "conv10": nn.Conv2d(3, 2, 1, bias=False), "xconv1": nn.Conv2d(3, 2, 1, bias=False),
            "stem": nn.ModuleDict({"conv1": nn.Conv2d(3, 2, 1, bias=False)})}
    return nn.ModuleDict(mods)


def test_bgr_to_rgb_only_on_modules_named_conv1():
    rng = np.random.default_rng(2)
    names = ["conv1", "conv2", "conv10", "xconv1", "stem.conv1"]
    src = {f"{n}_w": rng.standard_normal((2, 3, 1, 1)).astype(np.float32) for n in names}
    rules = [Rule(r"^(.*)_w$", r"\1.weight", "weight")]
    state, rows = map_tensors("convs", src, _convs(), rules, fixups=[BGR_TO_RGB_CONV1])
    flipped = {n for n in names if np.array_equal(state[f"{n}.weight"].numpy(), src[f"{n}_w"][:, ::-1])}
    same = {n for n in names if np.array_equal(state[f"{n}.weight"].numpy(), src[f"{n}_w"])}
    assert flipped == {"conv1", "stem.conv1"}
    assert same == {"conv2", "conv10", "xconv1"}
    assert {r.target for r in rows if r.fixup == "bgr_to_rgb_conv1"} == {"conv1.weight", "stem.conv1.weight"}


def test_bgr_to_rgb_is_not_applied_to_a_linear_named_conv1():
    module = nn.ModuleDict({"conv1": nn.Linear(3, 3, bias=False)})
    src = {"w": np.arange(9, dtype=np.float32).reshape(3, 3)}
    state, rows = map_tensors("lin", src, module, [Rule(r"^w$", "conv1.weight", "w")],
                              fixups=[BGR_TO_RGB_CONV1])
    assert np.array_equal(state["conv1.weight"].numpy(), src["w"]) and rows[0].fixup is None


def test_bgr_to_rgb_targets_only_the_first_conv_of_the_project_resnet():
    net = ResNet(V1_50)
    hits = [p for p, m in net.named_modules() if BGR_TO_RGB_CONV1.applies(m, p, "weight")]
    assert hits == ["conv1"]


# ------------------------------------------------------------------------------------- load_into

def test_load_into_is_strict_and_returns_eval_module():
    state, _ = map_tensors("tiny", _sources(), _net(), RULES, defaults=[BN_DEFAULT])
    net = _net().train()
    out = load_into(net, state)
    assert out is net and not out.training and not any(m.training for m in out.modules())
    assert torch.equal(out.fc.weight.detach(), state["fc.weight"])
    missing = {k: v for k, v in state.items() if k != "fc.bias"}
    with pytest.raises(RuntimeError, match="fc.bias"):
        load_into(_net(), missing)
    with pytest.raises(RuntimeError, match="extra"):
        load_into(_net(), {**state, "extra.weight": torch.zeros(1)})


def test_load_into_casts_to_module_dtype():
    src = {k: v.astype(np.float64) for k, v in _sources().items()}
    state, rows = map_tensors("tiny", src, _net(), RULES, defaults=[BN_DEFAULT])
    assert state["conv.weight"].dtype == torch.float64 and rows[0].dtype == "float64"
    net = load_into(_net(), state)
    assert net.conv.weight.dtype == torch.float32
    assert torch.equal(net.conv.weight.detach(), torch.from_numpy(src["c_weight"]).float())
