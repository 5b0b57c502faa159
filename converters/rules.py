"""Rename rules as data: ordered, anchored, each with a one-line reason.

The first rule whose pattern matches a source name decides its fate; a name no rule matches is an
error (no suffix fallback, no silent pass-through)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Union


@dataclass(frozen=True)
class _Anchored:
    """A compiled, ``^...$``-anchored pattern over tensor names."""

    pattern: str
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.pattern.startswith("^") and self.pattern.endswith("$")):
            raise ValueError(f"rule pattern must be anchored with ^...$: {self.pattern!r}")
        object.__setattr__(self, "regex", re.compile(self.pattern))


@dataclass(frozen=True)
class Rule(_Anchored):
    """Rename a source tensor: ``re.fullmatch(pattern, name).expand(repl)`` is the target name."""

    repl: str
    why: str

    def apply(self, name: str) -> str | None:
        m = self.regex.fullmatch(name)
        return m.expand(self.repl) if m else None


@dataclass(frozen=True)
class Ignore(_Anchored):
    """Consume a source tensor on purpose, e.g. training-only state; the reason goes in the report."""

    why: str

    def apply(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None


@dataclass(frozen=True)
class Default(_Anchored):
    """Fill target tensors that have no source counterpart (e.g. torch's BatchNorm step counter)."""

    value: float
    why: str


Entry = Union[Rule, Ignore]


def digest(entries: Iterable[Rule | Ignore | Default], fixup_names: Iterable[str] = ()) -> str:
    """Stable sha256 over the rule table; written into outputs so a rules change is visible."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{type(e).__name__}\t{e.pattern}\t{getattr(e, 'repl', getattr(e, 'value', ''))}\t"
                 f"{e.why}\n".encode())
    for name in fixup_names:
        h.update(f"fixup\t{name}\n".encode())
    return h.hexdigest()


def bn_rules(src: str, dst: str, why: str, *, names: tuple[str, str, str, str] = (
        "gamma", "beta", "running_mean", "running_var")) -> list[Rule]:
    """The four rules of one MXNet BatchNorm (``src`` is a regex prefix, ``dst`` its target prefix)."""
    g, b, m, v = (re.escape(n) for n in names)
    return [
        Rule(rf"^{src}{g}$", rf"{dst}weight", f"{why}: BN gamma is torch's weight"),
        Rule(rf"^{src}{b}$", rf"{dst}bias", f"{why}: BN beta is torch's bias"),
        Rule(rf"^{src}{m}$", rf"{dst}running_mean", f"{why}: BN moving mean"),
        Rule(rf"^{src}{v}$", rf"{dst}running_var", f"{why}: BN moving variance"),
    ]
