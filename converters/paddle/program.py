"""Rules for inference-format models, derived from the program itself.

An exported program names its parameters by counters (``conv2d_394.w_0``, ``mobile_one_block_3.w_1``)
that change from one export to the next, so no fixed name table can map them. The program's op
graph, though, says exactly what each parameter is: the filter of a conv, the bias added right
after it, the four tensors of a batch_norm, the scalar scale and shift of an affine block, the
[in, out] weight of a matmul. So:

1. ``program_layers`` walks the ops in order and groups parameters into layers of a known kind, each
   with the variable holding its output (the oracle's capture point);
2. the target module is run once on an example input and its parameter-owning modules are listed in
   the order they execute;
3. the two sequences are zipped. Kind, parameter roles, shapes and each op's attributes (stride,
   padding, dilation, groups, epsilon) must agree at every position, or conversion stops naming the
   first disagreement: a wrong architecture can never be filled silently.

The result is an ordinary rule table (one anchored rule per source tensor, saying which op it came
from), so the report shows the real source names."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..arch.paddle_ops import Affine
from ..arch.paddle_seg import SameConv2d
from ..errors import MappingError
from ..io.paddle import Op, Program, inference_files, read_program
from ..rules import Ignore, Rule

CONV_OPS = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "depthwise_conv2d_transpose")
MATMUL_OPS = ("matmul_v2", "matmul", "mul")
IGNORED_OPS = ("feed", "fetch")

# target module type -> layer kind
KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ConvTranspose2d, "conv_transpose"), (nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"),
    (nn.Linear, "linear"), (nn.LayerNorm, "layer_norm"), (Affine, "affine"))


@dataclass(frozen=True)
class ProgramLayer:
    kind: str
    params: dict[str, str]  # torch parameter name -> source variable
    out: str  # the variable holding the layer's output
    op: int  # index of the layer's first op
    op_type: str
    attrs: dict


def _persistable(program: Program, name: str) -> bool:
    var = program.vars.get(name)
    return var is not None and var.persistable


def _consumers(ops: Sequence[Op]) -> dict[str, list[int]]:
    users: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for names in op.inputs.values():
            for n in names:
                users.setdefault(n, []).append(i)
    return users


def program_layers(program: Program, where: str = "<program>") -> list[ProgramLayer]:
    """The program's parameter-owning layers, in op order."""
    ops, users = program.ops, _consumers(program.ops)
    taken: set[int] = set()  # ops folded into an earlier layer (a bias add)
    layers: list[ProgramLayer] = []
    # a parameter reshaped before its use (paddle 3 exports a conv bias as reshape2 to [1, C, 1, 1],
    # then elementwise_add): the reshaped variable stands for the parameter
    alias: dict[str, str] = {}
    channel_shaped: set[str] = set()  # reshaped to [1, C, 1, 1]: an add of it on any axis is per channel
    for i, op in enumerate(ops):
        x = op.inputs.get("X", [])
        if op.type in ("reshape2", "unsqueeze2") and len(x) == 1 and _persistable(program, x[0]):
            alias[op.outputs["Out"][0]] = x[0]
            taken.add(i)
            shape = list(op.attrs.get("shape") or [])
            if len(shape) == 4 and shape[0] == shape[2] == shape[3] == 1:
                channel_shaped.add(op.outputs["Out"][0])

    def const(op: Op, slot: str) -> str | None:
        names = op.inputs.get(slot, [])
        if len(names) != 1:
            return None
        name = alias.get(names[0], names[0])
        return name if _persistable(program, name) else None

    def follow_add(i: int, out: str, params: dict[str, str], role: str, axis: tuple[int, ...] | None) -> str:
        """Fold a following elementwise_add of a persistable tensor into layer ``i`` as ``role``
        (``axis`` None: any broadcast axis; a matmul's bias add names the last one)."""
        nxt = users.get(out, [])
        if len(nxt) == 1 and ops[nxt[0]].type == "elementwise_add" and nxt[0] not in taken:
            add = ops[nxt[0]]
            y = const(add, "Y")
            per_channel = axis == (1,) and add.inputs["Y"][0] in channel_shaped
            if y is not None and add.inputs["X"] == [out] and (
                    axis is None or per_channel or add.attrs.get("axis", -1) in axis):
                params[role] = y
                taken.add(nxt[0])
                return add.outputs["Out"][0]
        return out

    for i, op in enumerate(ops):
        if i in taken or op.type in IGNORED_OPS:
            continue
        consts = [n for names in op.inputs.values() for n in names if _persistable(program, n)]
        if not consts:
            continue
        if op.type in CONV_OPS:
            params = {"weight": op.inputs["Filter"][0]}
            if const(op, "Bias"):
                params["bias"] = const(op, "Bias")
            out = op.outputs["Output"][0]
            if "bias" not in params:
                out = follow_add(i, out, params, "bias", (1,))
            kind = "conv_transpose" if "transpose" in op.type else "conv"
        elif op.type in ("batch_norm", "sync_batch_norm"):
            params = {"weight": op.inputs["Scale"][0], "bias": op.inputs["Bias"][0],
                      "running_mean": op.inputs["Mean"][0], "running_var": op.inputs["Variance"][0]}
            out, kind = op.outputs["Y"][0], "bn"
        elif op.type == "layer_norm":
            params = {"weight": op.inputs["Scale"][0], "bias": op.inputs["Bias"][0]}
            out, kind = op.outputs["Y"][0], "layer_norm"
        elif op.type in MATMUL_OPS and const(op, "Y") and not const(op, "X"):
            if op.attrs.get("trans_y") or op.attrs.get("transpose_Y"):
                raise MappingError(where, [f"op {i} {op.type}: a transposed constant weight is not supported"])
            params = {"weight": const(op, "Y")}
            out = follow_add(i, op.outputs["Out"][0], params, "bias", None)
            kind = "linear"
        elif op.type == "elementwise_mul" and (const(op, "X") or const(op, "Y")):
            params = {"scale": const(op, "X") or const(op, "Y")}
            out = follow_add(i, op.outputs["Out"][0], params, "bias", (-1,))
            kind = "affine"
        else:
            raise MappingError(where, [f"op {i} {op.type} reads parameters {consts}: no layer kind for it"])
        used = set(params.values())
        if set(consts) - used:
            raise MappingError(where, [f"op {i} {op.type} reads parameters {sorted(set(consts) - used)} "
                                       "that no layer role takes"])
        layers.append(ProgramLayer(kind, params, out, i, op.type, dict(op.attrs)))
    return layers


def _kind(module: nn.Module) -> str | None:
    return next((k for t, k in KINDS if isinstance(module, t)), None)


def execution_order(module: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Parameter-owning modules of ``module`` in the order one forward pass calls them."""
    order: list[tuple[str, nn.Module]] = []
    handles = []
    for name, sub in module.named_modules():
        if any(True for _ in sub.parameters(recurse=False)) or any(True for _ in sub.buffers(recurse=False)):
            handles.append(sub.register_forward_pre_hook(lambda m, _i, n=name: order.append((n, m))))
    try:
        with torch.inference_mode():
            module.eval()(example)
    finally:
        for h in handles:
            h.remove()
    seen = [n for n, _ in order]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise MappingError(type(module).__name__, [f"modules {twice} run more than once; "
                                                   "program order cannot place shared weights"])
    return order


def _pairs(attr):
    return tuple(attr) if isinstance(attr, (list, tuple)) else (attr, attr)


def _same_padding(module: nn.Module, attrs: dict) -> list[str]:
    """A "SAME" conv pads ceil(in / stride) style, the odd pixel after: ``SameConv2d`` does that for
    any stride; a stride-1 conv with an odd kernel pads (k - 1) / 2 on each side, a plain conv's
    symmetric padding (with dilation 1)."""
    if isinstance(module, SameConv2d):
        return [] if module.padding == (0, 0) else [f"SameConv2d with padding {module.padding}"]
    k, s, d = module.kernel_size, module.stride, module.dilation
    if s == (1, 1) and d == (1, 1) and all(n % 2 for n in k) and module.padding == (k[0] // 2, k[1] // 2):
        return []
    return [f"padding_algorithm SAME but the target pads {module.padding} (kernel {k}, stride {s})"]


def _check_attrs(layer: ProgramLayer, module: nn.Module) -> list[str]:
    """The op's hyper-parameters against the target module's."""
    a, bad = layer.attrs, []
    if layer.kind in ("conv", "conv_transpose"):
        algorithm = a.get("padding_algorithm", "EXPLICIT")
        pads = tuple(a.get("paddings", (0, 0)))
        if algorithm == "SAME":  # Paddle's "same": paddings ignored, the target must pad the same way
            bad += _same_padding(module, a)
            pads = module.padding
        elif algorithm == "VALID":
            pads = (0, 0)
        elif algorithm != "EXPLICIT":
            bad.append(f"padding_algorithm {algorithm} is not ported")
        if len(pads) == 4:  # [top, bottom, left, right]: symmetric ones are torch's (h, w)
            if pads[0] != pads[1] or pads[2] != pads[3]:
                bad.append(f"asymmetric paddings {pads}")
            pads = (pads[0], pads[2])
        want = {"stride": _pairs(a.get("strides", (1, 1))), "padding": pads,
                "dilation": _pairs(a.get("dilations", (1, 1))), "groups": a.get("groups", 1)}
        for k, v in want.items():
            if getattr(module, k) != v:
                bad.append(f"{k} {getattr(module, k)} but the op has {v}")
    elif layer.kind == "bn" and abs(module.eps - a.get("epsilon", 1e-5)) > 1e-12:
        bad.append(f"eps {module.eps} but the op has {a.get('epsilon')}")
    elif layer.kind == "layer_norm" and abs(module.eps - a.get("epsilon", 1e-5)) > 1e-12:
        bad.append(f"eps {module.eps} but the op has {a.get('epsilon')}")
    return bad


def first_output_ancestors(program: Program) -> set[str]:
    """Variables the program's first fetched output is computed from (itself included)."""
    fetches = sorted((op for op in program.ops if op.type == "fetch"), key=lambda op: op.attrs.get("col", 0))
    if not fetches:
        return set()
    needed = set(fetches[0].inputs.get("X", []))
    for op in reversed(program.ops):
        if op.type != "fetch" and any(n in needed for names in op.outputs.values() for n in names):
            needed.update(n for names in op.inputs.values() for n in names)
    return needed


def align(program: Program, module: nn.Module, example: torch.Tensor, where: str) -> list[Rule | Ignore]:
    layers = program_layers(program, where)
    order = [(n, m) for n, m in execution_order(module, example) if _kind(m) is not None]
    problems, ignored = [], []
    if len(layers) > len(order):
        # an auxiliary output the target does not return (PaddleSeg's export fetches the training
        # heads' logits too): layers the first output does not depend on are left out
        needed = first_output_ancestors(program)
        aux = [layer for layer in layers if layer.out not in needed]
        if aux and len(layers) - len(aux) == len(order):
            layers = [layer for layer in layers if layer.out in needed]
            ignored = [Ignore(f"^{re.escape(src)}$", f"op {layer.op} {layer.op_type}: feeds only an auxiliary "
                              "output (not the first fetch), which the target does not compute")
                       for layer in aux for src in layer.params.values()]
    if len(layers) != len(order):
        problems.append(f"the program has {len(layers)} parameter layers, the target runs {len(order)}")
    rules: list[Rule] = []
    for pos, (layer, (path, sub)) in enumerate(zip(layers, order)):
        here = f"layer {pos}: program op {layer.op} {layer.op_type} vs target {path}"
        if layer.kind != _kind(sub):
            problems.append(f"{here}: kinds {layer.kind} and {_kind(sub)} differ")
            break  # everything after a misalignment would be noise
        own = {n for n, _ in sub.named_parameters(recurse=False)} | {
            n for n, _ in sub.named_buffers(recurse=False) if n != "num_batches_tracked"}
        if own != set(layer.params):
            problems.append(f"{here}: the target has {sorted(own)}, the program {sorted(layer.params)}")
            break
        problems += [f"{here}: {b}" for b in _check_attrs(layer, sub)]
        for role, src in layer.params.items():
            rules.append(Rule(f"^{re.escape(src)}$", f"{path}.{role}" if path else role,
                              f"op {layer.op} {layer.op_type}: {layer.kind} {role}"))
    if problems:
        raise MappingError(where, problems)
    return rules + ignored


def program_rules(build: Callable[[], nn.Module], example_shape: tuple[int, ...]) -> Callable[[Path], list[Rule | Ignore]]:
    """A rule-table factory for ModelSpec.rules["inference"]: the source path -> aligned rules."""
    def rules(path: Path) -> list[Rule | Ignore]:
        pdmodel, _ = inference_files(path)
        torch.manual_seed(0)  # the example forward must not depend on the caller's RNG state
        return align(read_program(pdmodel), build(), torch.rand(example_shape), str(pdmodel))
    return rules


@functools.lru_cache(maxsize=8)
def layers_of(pdmodel: str) -> tuple[ProgramLayer, ...]:
    return tuple(program_layers(read_program(pdmodel), pdmodel))
