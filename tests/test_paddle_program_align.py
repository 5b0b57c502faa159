"""The op-graph aligner (converters/paddle/program.py) on small hand-written programs: Paddle's
"SAME" padding and programs that fetch an auxiliary output the target does not compute."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from converters.arch.paddle_seg import SameConv2d
from converters.errors import MappingError
from converters.io.paddle import Block, Op, Program, Var
from converters.paddle.program import align, first_output_ancestors
from converters.rules import Ignore, Rule


def conv_op(x: str, w: str, out: str, **attrs) -> Op:
    attrs = {"strides": [1, 1], "paddings": [0, 0], "dilations": [1, 1], "groups": 1, **attrs}
    return Op("conv2d", {"Input": [x], "Filter": [w]}, {"Output": [out]}, attrs)


def program(ops: list[Op], params: list[str]) -> Program:
    names = {n for op in ops for slot in (op.inputs, op.outputs) for ns in slot.values() for n in ns}
    return Program([Block(0, -1, {n: Var(n, 7, n in params) for n in names}, ops)])


def feed(out: str) -> Op:
    return Op("feed", {"X": ["feed"]}, {"Out": [out]}, {"col": 0})


def fetch(x: str, col: int) -> Op:
    return Op("fetch", {"X": [x]}, {"Out": ["fetch"]}, {"col": col})


@pytest.mark.parametrize("stride, target, ok", [
    (2, SameConv2d(3, 4, 3, 2, bias=False), True),  # input-size dependent: only SameConv2d pads that way
    (2, nn.Conv2d(3, 4, 3, 2, 1, bias=False), False),
    (1, nn.Conv2d(3, 4, 3, 1, 1, bias=False), True),  # stride 1, odd kernel: symmetric (k - 1) / 2
    (1, nn.Conv2d(3, 4, 3, 1, 0, bias=False), False),
])
def test_same_padding(stride, target, ok):
    # Paddle leaves "paddings" as written ([0, 0]) when padding_algorithm is SAME
    prog = program([feed("x"), conv_op("x", "w", "y", strides=[stride] * 2, padding_algorithm="SAME"),
                    fetch("y", 0)], ["w"])
    if ok:
        assert [r.repl for r in align(prog, target, torch.rand(1, 3, 9, 9), "p")] == ["weight"]
    else:
        with pytest.raises(MappingError, match="padding_algorithm SAME but the target pads"):
            align(prog, target, torch.rand(1, 3, 9, 9), "p")


def aux_program() -> Program:
    """x -> conv a -> fetch 0; x -> conv b -> conv c -> fetch 1 (an auxiliary head)."""
    return program([feed("x"), conv_op("x", "wa", "a"), conv_op("x", "wb", "b"), conv_op("b", "wc", "c"),
                    fetch("a", 0), fetch("c", 1)], ["wa", "wb", "wc"])


def test_layers_feeding_only_an_auxiliary_output_are_ignored():
    prog = aux_program()
    assert {"a", "x", "wa"} <= first_output_ancestors(prog) and "b" not in first_output_ancestors(prog)
    rules = align(prog, nn.Conv2d(3, 3, 1, bias=False), torch.rand(1, 3, 4, 4), "p")
    assert [(type(r), r.pattern) for r in rules] == [(Rule, "^wa$"), (Ignore, "^wb$"), (Ignore, "^wc$")]
    assert all("auxiliary" in r.why for r in rules[1:])


def test_a_missing_layer_on_the_first_output_is_still_refused():
    # the target computes one conv where the first output needs two: nothing is ignored silently
    prog = program([feed("x"), conv_op("x", "wa", "a"), conv_op("a", "wb", "b"), fetch("b", 0)], ["wa", "wb"])
    with pytest.raises(MappingError, match="the program has 2 parameter layers, the target runs 1"):
        align(prog, nn.Conv2d(3, 3, 1, bias=False), torch.rand(1, 3, 4, 4), "p")
