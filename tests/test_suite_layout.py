"""`make parity-full` collects tests/ and parity/tests/ in one session, where pytest imports test
modules by basename (no packages): a basename used in both folders fails collection."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique_across_suites():
    names = Counter(p.name for d in ("tests", "parity/tests") for p in (ROOT / d).glob("test_*.py"))
    assert names and not [n for n, k in names.items() if k > 1]

