"""Rename rules as data: anchoring, fullmatch semantics, ordering, digest, BatchNorm helpers."""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from converters.engine import map_tensors
from converters.errors import MappingError
from converters.rules import Default, Ignore, Rule, bn_rules, digest


@pytest.mark.parametrize("pattern", ["abc", "^abc", "abc$", " ^abc$", "^abc$ "])
@pytest.mark.parametrize("make", [
    lambda p: Rule(p, "x", "why"),
    lambda p: Ignore(p, "why"),
    lambda p: Default(p, 0, "why"),
], ids=["Rule", "Ignore", "Default"])
def test_unanchored_patterns_are_rejected(make, pattern):
    with pytest.raises(ValueError, match="anchored"):
        make(pattern)


def test_anchored_patterns_are_accepted():
    assert Rule(r"^a(\d+)$", r"b\1", "why").apply("a7") == "b7"
    assert Ignore(r"^opt\..*$", "why").apply("opt.state")
    assert Default(r"^.*num_batches_tracked$", 0, "why").regex.fullmatch("bn.num_batches_tracked")


def test_rule_apply_expands_groups_in_order():
    rule = Rule(r"^features\.(\d+)\.(\d+)\.body\.0\.(weight|bias)$", r"layer\1.\2.conv1.\3", "why")
    assert rule.apply("features.4.0.body.0.weight") == "layer4.0.conv1.weight"
    assert rule.apply("features.7.12.body.0.bias") == "layer7.12.conv1.bias"
    assert rule.apply("features.4.0.body.0.running_mean") is None


def test_rule_apply_uses_fullmatch_not_match():
    # re.match("^w$", "w\n") succeeds ($ matches before a trailing newline); fullmatch does not.
    assert Rule(r"^w$", "x", "why").apply("w\n") is None
    # An alternation passes the ^...$ check but re.match would accept the prefix "a" of "ax".
    alt = Rule(r"^a|b$", "x", "why")
    assert alt.apply("ax") is None and alt.apply("xb") is None
    assert alt.apply("a") == "x" and alt.apply("b") == "x"
    assert not Ignore(r"^a|b$", "why").apply("ax")


def _two_linears() -> nn.Module:
    return nn.ModuleDict({"first": nn.Linear(2, 2, bias=False), "second": nn.Linear(2, 2, bias=False)})


def test_first_matching_rule_decides():
    # "w" matches both rules; the one listed first decides where it goes
    specific, general = Rule(r"^w$", "first.weight", "to first"), Rule(r"^[wv]$", "second.weight", "to second")
    src = {"w": np.arange(4, dtype=np.float32).reshape(2, 2), "v": np.ones((2, 2), np.float32)}
    state, rows = map_tensors("m", src, _two_linears(), [specific, general])
    by_source = {r.source: (r.target, r.rule, r.why) for r in rows}
    assert by_source["w"] == ("first.weight", r"^w$", "to first")
    assert by_source["v"] == ("second.weight", r"^[wv]$", "to second")
    assert np.array_equal(state["first.weight"].numpy(), src["w"])
    # reversed: the general rule now takes "w" as well, so "w" and "v" collide on second.weight
    with pytest.raises(MappingError) as exc:
        map_tensors("m", src, _two_linears(), [general, specific])
    assert any("v and w both map onto target second.weight" in p for p in exc.value.problems)
    assert any("first.weight" in p and "not filled" in p for p in exc.value.problems)


def test_ignore_before_rule_wins():
    src = {"w": np.zeros((2, 2), np.float32)}
    rules = [Ignore(r"^w$", "ignored on purpose"), Rule(r"^w$", "first.weight", "would map")]
    module = nn.ModuleDict({"first": nn.Linear(2, 2, bias=False)})
    with pytest.raises(MappingError) as exc:  # ignored -> target first.weight stays unfilled
        map_tensors("m", src, module, rules)
    assert exc.value.problems == ["target first.weight (2, 2) is not filled by any source tensor"]


# ---------------------------------------------------------------------------------------- digest

def _table():
    return [Rule(r"^a(\d)$", r"b\1", "rename a"), Ignore(r"^opt$", "optimizer"),
            Default(r"^.*num_batches_tracked$", 0, "step counter")]


def test_digest_is_stable_across_calls_and_equal_tables():
    d = digest(_table(), ["fx"])
    assert d == digest(_table(), ["fx"]) == digest(_table(), ("fx",))
    assert len(d) == 64 and int(d, 16) >= 0


@pytest.mark.parametrize("change", [
    lambda t: t.__setitem__(0, Rule(r"^a(\d\d)$", r"b\1", "rename a")),  # pattern
    lambda t: t.__setitem__(0, Rule(r"^a(\d)$", r"c\1", "rename a")),  # repl
    lambda t: t.__setitem__(0, Rule(r"^a(\d)$", r"b\1", "rename A")),  # why
    lambda t: t.__setitem__(1, Ignore(r"^opt$", "optimiser")),  # ignore why
    lambda t: t.__setitem__(2, Default(r"^.*num_batches_tracked$", 1, "step counter")),  # value
    lambda t: t.reverse(),  # order
    lambda t: t.pop(),  # removal
], ids=["pattern", "repl", "why", "ignore-why", "default-value", "order", "removed"])
def test_digest_changes_with_the_table(change):
    table = _table()
    change(table)
    assert digest(table, ["fx"]) != digest(_table(), ["fx"])


def test_digest_changes_with_fixup_names():
    base = digest(_table(), ["fx"])
    assert digest(_table(), ["fy"]) != base
    assert digest(_table(), []) != base
    assert digest(_table(), ["fx", "fy"]) != base


# ------------------------------------------------------------------------------------- bn_rules

def test_bn_rules_default_names():
    rules = bn_rules(r"features\.1\.", "bn1.", "stem BN")
    assert len(rules) == 4
    got = {n: next(r.apply(n) for r in rules if r.apply(n)) for n in
           ("features.1.gamma", "features.1.beta", "features.1.running_mean", "features.1.running_var")}
    assert got == {"features.1.gamma": "bn1.weight", "features.1.beta": "bn1.bias",
                   "features.1.running_mean": "bn1.running_mean",
                   "features.1.running_var": "bn1.running_var"}
    assert all(r.why.startswith("stem BN") for r in rules)
    # the prefix is a regex: "." is escaped by the caller, so "features_1_gamma" is not matched
    assert all(r.apply("features_1_gamma") is None for r in rules)
    assert all(r.apply("features.1.moving_mean") is None for r in rules)


def test_bn_rules_custom_names_and_groups():
    rules = bn_rules(r"expand_bn(\d+)_", r"extras.\1.bn.", "extra BN",
                     names=("gamma", "beta", "moving_mean", "moving_var"))
    assert [r.apply(f"expand_bn3_{n}") for r, n in zip(rules, ("gamma", "beta", "moving_mean",
                                                                  "moving_var"))] == [
        "extras.3.bn.weight", "extras.3.bn.bias", "extras.3.bn.running_mean", "extras.3.bn.running_var"]
    assert all(r.apply("expand_bn3_running_mean") is None for r in rules)
