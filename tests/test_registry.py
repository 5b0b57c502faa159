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


def test_weights_record_is_well_formed(spec, monkeypatch):
    monkeypatch.delenv("MXNET_GLUON_REPO", raising=False)
    w = spec.weights()
    assert isinstance(w, SourceWeights)
    assert re.fullmatch(r"[0-9a-f]{40}", w.sha1)
    url = urlparse(w.url)
    assert url.scheme == "https" and url.netloc and url.path.endswith(f"{w.name}-{w.sha1[:8]}.zip")
    assert w.filename == f"{w.name}-{w.sha1[:8]}.params"


@pytest.mark.oracle
def test_weights_record_matches_gluoncv_model_store(spec):
    """Store name and sha1 are gluoncv's own (pruned nets keep legacy store names)."""
    from converters.frameworks import import_gluoncv
    import_gluoncv()
    from gluoncv.model_zoo import model_store
    w = spec.weights()
    assert model_store._model_sha1.get(w.name) == w.sha1, (spec.name, w.name)


def test_weights_url_follows_the_mirror(spec, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "https://mirror.example/repo")
    assert spec.weights().url.startswith("https://mirror.example/repo/gluon/models/")


def test_preprocess_and_metrics(spec):
    p = spec.preprocess
    assert isinstance(p, Preprocess)
    assert len(p.size) == 2 and all(isinstance(v, int) and v > 0 for v in p.size)
    assert len(p.mean) == 3 and len(p.std) == 3 and all(s > 0 for s in p.std)
    assert p.resize in ("short-side", "exact", "none", "short-within")
    assert p.crop in ("center-floor", "center-round", "none")
    if p.resize == "short-side":
        assert p.resize_short is not None and p.resize_short >= max(p.size)
    if p.resize == "short-within":  # R-CNN: size is (short, max) of the resized image
        assert p.max_size is not None and (p.resize_short, p.max_size) == p.size
    assert len(spec.metrics) >= 1
    assert all(isinstance(m, Metric) and m.name and m.dataset and m.source and m.value > 0
               for m in spec.metrics)


def test_rules_are_documented(spec):
    assert spec.rules.get("gluon"), "every gluon model needs rules for the save_parameters layout"
    for layout, rules in spec.rules.items():
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
    assert spec.framework == "gluon" and spec.task in ("classification", "detection", "segmentation", "pose")
    assert spec.source_format == "mxnet-params"
