"""The mapping engine shared by every framework: source tensors -> target state dict.

rules -> fix-ups (by target layer type) -> strict coverage check -> ConversionResult.
Every problem is collected and raised together in one MappingError."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import MappingError
from .fixups import Fixup
from .rules import Default, Ignore, Rule


@dataclass(frozen=True)
class MappingRow:
    """One line of the audit table: what happened to one tensor and why."""

    source: str | None  # None for target tensors filled by a Default
    target: str | None  # None for ignored source tensors
    shape: tuple[int, ...]
    dtype: str
    status: str  # "mapped" | "ignored" | "default"
    rule: str  # the pattern that decided
    why: str
    fixup: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def map_tensors(model: str, source: Mapping[str, np.ndarray], target: nn.Module,
                rules: Sequence[Rule | Ignore], fixups: Sequence[Fixup] = (),
                defaults: Sequence[Default] = ()) -> tuple[dict[str, torch.Tensor], list[MappingRow]]:
    """Map every source tensor onto ``target``'s state dict, or raise one MappingError listing all
    problems: unmatched sources, unknown or doubly-filled targets, shape mismatches, unfilled
    targets."""
    expected = target.state_dict()
    problems: list[str] = []
    out: dict[str, torch.Tensor] = {}
    rows: list[MappingRow] = []
    claimed: dict[str, str] = {}
    for name, array in source.items():
        row, value = _map_one(name, array, rules, fixups, target, expected, claimed, problems)
        if row is not None:
            rows.append(row)
        if value is not None and row is not None and row.target is not None:
            out[row.target] = value
    for tname, tensor in expected.items():
        if tname in claimed:
            continue
        default = next((d for d in defaults if d.regex.fullmatch(tname)), None)
        if default is None:
            problems.append(f"target {tname} {tuple(tensor.shape)} is not filled by any source tensor")
            continue
        out[tname] = torch.full_like(tensor, default.value)
        rows.append(MappingRow(None, tname, tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""),
                               "default", default.pattern, default.why))
    if problems:
        raise MappingError(model, problems)
    return out, rows


def _map_one(name: str, array: np.ndarray, rules: Sequence[Rule | Ignore], fixups: Sequence[Fixup],
             target: nn.Module, expected: Mapping[str, torch.Tensor], claimed: dict[str, str],
             problems: list[str]) -> tuple[MappingRow | None, torch.Tensor | None]:
    shape, dtype = tuple(array.shape), str(array.dtype)
    for entry in rules:
        if isinstance(entry, Ignore):
            if entry.apply(name):
                return MappingRow(name, None, shape, dtype, "ignored", entry.pattern, entry.why), None
            continue
        tname = entry.apply(name)
        if tname is None:
            continue
        if tname not in expected:
            problems.append(f"source {name} -> {tname}: no such target tensor (rule {entry.pattern})")
            return None, None
        if tname in claimed:
            problems.append(f"source {name} and {claimed[tname]} both map onto target {tname}")
            return None, None
        claimed[tname] = name
        fix = _fixup_for(tname, target, fixups)
        try:
            value = fix.fn(array) if fix else array
        except ValueError as exc:
            problems.append(f"source {name} {shape}: fix-up {fix.name} failed: {exc}")
            return None, None
        want = tuple(expected[tname].shape)
        if tuple(value.shape) != want:
            problems.append(f"shape mismatch: source {name} {shape}"
                            f"{' after ' + fix.name if fix else ''} -> target {tname} {want}")
            return None, None
        row = MappingRow(name, tname, shape, dtype, "mapped", entry.pattern, entry.why,
                         fix.name if fix else None)
        return row, torch.from_numpy(np.ascontiguousarray(value).copy())
    problems.append(f"source {name} {shape} is matched by no rule")
    return None, None


def _fixup_for(tname: str, target: nn.Module, fixups: Sequence[Fixup]) -> Fixup | None:
    path, _, param = tname.rpartition(".")
    module = target.get_submodule(path) if path else target
    hits = [f for f in fixups if f.applies(module, path, param)]
    if len(hits) > 1:
        raise ValueError(f"fix-ups {[f.name for f in hits]} all apply to {tname}")
    return hits[0] if hits else None


def load_into(target: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strict load (the engine already proved coverage); casts to the module's dtypes."""
    target.load_state_dict(state_dict, strict=True)
    return target.eval()
