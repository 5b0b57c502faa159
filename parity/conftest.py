"""Shared, session-scoped conversions and parity reports (seeded weights: no download needed)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def converted():
    """name -> ConversionResult from seeded source weights (seed 0), built once per session."""
    from converters import convert
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = convert(name, init="random", seed=0)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def parity_report(converted):
    """name -> ParityReport on all sample photographs, computed once per session."""
    from parity.verify import verify
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = verify(name, result=converted(name))
        return cache[name]
    return get
