"""Seeded-source cache keys and calibration inputs (no source framework needed: the builders are
replaced by recorders)."""
from __future__ import annotations

import dataclasses

import pytest

from converters import registry, seeding
from converters.gluon import seeded as gluon_seeded
from converters.paddle import seeded as paddle_seeded


def test_calibration_images_take_the_first_n_photographs():
    every = gluon_seeded.calibration_images((32, 48))
    two = gluon_seeded.calibration_images((32, 48), 2)
    assert two.shape == (2, 3, 32, 48) and every.shape[0] > 2
    assert (two == every[:2]).all()  # the parity suite's first photographs, not others


@pytest.mark.parametrize("name, module, suffix", [
    ("faster_rcnn_resnet50_v1b_voc", gluon_seeded, ".params"),
    ("FasterRCNN_ResNet18_FPN", paddle_seeded, ".pdparams"),
])
def test_fewer_calibration_photographs_is_another_cached_file(monkeypatch, tmp_path, name, module, suffix):
    """A seed calibrated on n photographs never reuses (or overwrites) an all-photograph cache file."""
    monkeypatch.setenv("ZOOPORT_WEIGHTS_DIR", str(tmp_path))
    built = []

    def record(*args, **kwargs):
        out = next(a for a in args if hasattr(a, "suffix"))
        built.append((out.name, kwargs.get("images")))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"")
        return out

    monkeypatch.setattr(module, "build", record)
    spec = registry.get(name)
    paths = {n: seeding.seeded_source(dataclasses.replace(spec, seed_images=n), 0) for n in (0, 2)}
    assert paths[0] != paths[2] and paths[0].parent == paths[2].parent
    assert paths[0].name.endswith(f"-r{module.SEED_FORMAT}{suffix}")
    assert paths[2].name.endswith(f"-r{module.SEED_FORMAT}-i2{suffix}")
    assert len(built) == 2
    if module is gluon_seeded:  # gluon's builder takes the count; paddle's reads it from the spec
        assert [b[1] for b in built] == [0, 2]
