"""The model registry: discovery, uniqueness, lookup errors and the schema of every record."""
from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlparse

import pytest

import converters
from converters import registry
from converters.errors import UnknownModel
from converters.registry import Metric, ModelSpec, Preprocess
from converters.rules import Default, Ignore, Rule
from converters.sources import SourceWeights

SPECS = registry.specs()
GLUON = [s for s in SPECS if s.framework == "gluon"]


def test_available_lists_the_gluon_models():
    names = converters.available()
    assert {"resnet50_v1", "ssd_512_resnet50_v1_voc"} <= set(names)
    assert names == sorted(names) == registry.names()


def test_duplicate_registration_raises():
    spec = registry.get("resnet50_v1")
    saved = dict(registry._REGISTRY)
    try:
        with pytest.raises(ValueError, match="resnet50_v1.*registered twice"):
            registry.register(dataclasses.replace(spec, family="copy.resnet"))
        assert registry.get("resnet50_v1") is spec  # the original is kept
        registry.register(dataclasses.replace(spec, name="resnet50_v1_copy"))  # a fresh name is fine
        assert "resnet50_v1_copy" in converters.available()
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
    assert "resnet50_v1_copy" not in converters.available()


@pytest.mark.parametrize("name", ["resnet50_v9", "no_such_model", ""])
def test_unknown_model(name):
    with pytest.raises(UnknownModel) as exc:
        registry.get(name)
    msg = str(exc.value)
    assert "\n" not in msg and repr(name) in msg and exc.value.hint


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModel, match=r"did you mean .*resnet50_v1"):
        converters.convert("resnet50_v9")


# ------------------------------------------------------------------------------- schema per spec

@pytest.fixture(params=SPECS, ids=[s.name for s in SPECS])
def spec(request) -> ModelSpec:
    return request.param


@pytest.fixture(params=GLUON, ids=[s.name for s in GLUON])
def gluon_spec(request) -> ModelSpec:
    return request.param


def test_weights_record_is_well_formed(spec, monkeypatch):
    monkeypatch.delenv("MXNET_GLUON_REPO", raising=False)
    w = spec.weights()
    assert isinstance(w, SourceWeights)
    if w.archive == "package":  # shipped inside an installed wheel (PP-OCR)
        assert w.url.startswith("pypi:") and w.package and w.member and w.sha1 is None
        return
    if w.archive == "tar":  # a PaddleX checkpoint directory (gzipped for PaddleSeg); no published hashes
        assert urlparse(w.url).scheme == "https" and w.url.endswith((".tar", ".tgz", ".tar.gz"))
        assert "/" not in w.filename
        return
    if spec.framework == "detectron":  # the model zoo's own pickle; it publishes md5 sums only
        url = urlparse(w.url)
        assert w.archive == "none" and w.sha1 is None and w.filename == f"{spec.name}.pkl"
        assert url.scheme == "https" and url.netloc == "dl.fbaipublicfiles.com" and url.path.startswith("/detectron/")
        assert url.path.endswith((f"/{spec.name}.pkl", "/model_final.pkl"))
        assert spec.name.startswith(("R-", "X-")) or f"/{spec.name}.yaml." in url.path  # the config's own run
        return
    if spec.framework == "paddle":  # one fluid.save pickle; the PaddleX tables publish no hashes
        assert w.archive == "none" and w.sha1 is None and w.url.endswith(".pdparams") and w.filename.endswith(".pdparams")
        return
    assert re.fullmatch(r"[0-9a-f]{40}", w.sha1)
    url = urlparse(w.url)
    assert url.scheme == "https" and url.netloc and url.path.endswith(f"{w.name}-{w.sha1[:8]}.zip")
    assert w.filename == f"{w.name}-{w.sha1[:8]}.params"


@pytest.mark.oracle
def test_weights_record_matches_gluoncv_model_store(gluon_spec):
    """Store name and sha1 are gluoncv's own (pruned nets keep legacy store names)."""
    from converters.frameworks import import_gluoncv
    import_gluoncv()
    from gluoncv.model_zoo import model_store
    w = gluon_spec.weights()
    assert model_store._model_sha1.get(w.name) == w.sha1, (gluon_spec.name, w.name)


def test_weights_url_follows_the_mirror(gluon_spec, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "https://mirror.example/repo")
    assert gluon_spec.weights().url.startswith("https://mirror.example/repo/gluon/models/")


def test_preprocess_and_metrics(spec):
    p = spec.preprocess
    assert isinstance(p, Preprocess)
    assert len(p.size) == 2 and all(isinstance(v, int) and v > 0 for v in p.size)
    assert len(p.mean) == 3 and len(p.std) == 3 and all(s > 0 for s in p.std)
    if spec.prepare is not None:  # image-dependent input size (PP-OCR): the model's own contract
        x = spec.prepare(spec.samples()[0][1])
        assert x.ndim == 4 and x.shape[:2] == (1, 3) and x.dtype.name == "float32"
        return
    assert p.resize in ("short-side", "exact", "none", "short-within", "scale-within")
    assert p.crop in ("center-floor", "center-round", "none")
    if p.resize == "short-side":
        assert p.resize_short is not None and p.resize_short >= max(p.size)
    if p.resize in ("short-within", "scale-within"):  # R-CNN: size is (short, max) of the resized image
        assert p.max_size is not None and (p.resize_short, p.max_size) == p.size
    # every model has a published metric, unless its notes say the publisher lists none
    assert len(spec.metrics) >= 1 or any("no published" in n for n in spec.notes), spec.name
    assert all(isinstance(m, Metric) and m.name and m.dataset and m.source and m.value > 0
               for m in spec.metrics)


def test_rules_are_documented(spec):
    if spec.framework == "gluon":
        assert spec.rules.get("gluon"), "every gluon model needs rules for the save_parameters layout"
    for layout, rules in spec.rules.items():
        if callable(rules):  # derived from the source (inference programs): tests/test_paddle_program.py
            continue
        assert rules, layout
        for r in rules:
            assert isinstance(r, (Rule, Ignore)), (layout, r)
            assert r.why.strip(), (layout, r.pattern)
        patterns = [r.pattern for r in rules]
        assert len(patterns) == len(set(patterns)), f"{layout}: duplicated pattern"
    for d in spec.defaults:
        assert isinstance(d, Default) and d.why.strip()
    for f in spec.fixups:
        assert f.name and f.why.strip()
    from converters.pipeline import READERS
    assert spec.framework in ("gluon", "paddle", "detectron") and spec.task in (
        "classification", "detection", "segmentation", "pose", "text-detection", "text-recognition")
    assert spec.source_format in READERS
