"""parity/digits.py without MXNet: the data (split, rendering, cache tag) and the cache's build-once,
reuse, atomic and corruption behaviour, with the training and the MXNet preprocessing stubbed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from parity import digits as D


@pytest.fixture(scope="module")
def data():
    return D.scans()


def test_split_is_stratified_disjoint_and_fixed(data):
    _, labels = data
    train, held = D.split(labels, D.Recipe())
    assert len(set(train) | set(held)) == len(labels) == 1797 and not set(train) & set(held)
    assert len(held) == 540  # 30% of 1797, rounded up by scikit-learn
    share = np.bincount(labels[held], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(share - 0.3) < 0.02), share  # every class held out at ~30%
    again = D.split(labels, D.Recipe())
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, D.split(labels, D.Recipe(seed=1))[1])


def test_encoded_image_is_the_scan(data):
    """A grey JPEG at the recipe's side whose 8x8 area average is the scan (ink 0..16 -> 0..255)."""
    images, _ = data
    recipe = D.Recipe()
    blob = D.encode(images[0], recipe)
    assert blob[:2] == b"\xff\xd8" and blob == D.encode(images[0], recipe)  # JPEG, deterministic
    img = D.decode(blob)
    assert img.shape == (recipe.side, recipe.side, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - img[..., :1]).max() <= 2  # grey (JPEG chroma rounding aside)
    small = cv2.resize(img[..., 0], (8, 8), interpolation=cv2.INTER_AREA).astype(float)
    assert np.corrcoef(small.ravel(), images[0].ravel())[0, 1] > 0.95


def test_tag_follows_recipe_images_and_pipeline():
    blobs, probe = [b"a", b"b"], np.zeros((2, 3, 32, 32), np.float32)
    base = D.tag(D.Recipe(), blobs, probe)
    assert base.startswith(f"v{D.FORMAT}-") and base == D.tag(D.Recipe(), list(blobs), probe.copy())
    others = {D.tag(D.Recipe(epochs=1), blobs, probe), D.tag(D.Recipe(side=48), blobs, probe),
              D.tag(D.Recipe(), [b"a", b"c"], probe), D.tag(D.Recipe(), blobs, probe + 1e-6)}
    assert base not in others and len(others) == 4


class _Net:
    def save_parameters(self, path: str) -> None:
        Path(path).write_bytes(b"params")


@pytest.fixture
def stubbed(monkeypatch):
    """No MXNet: a cheap stand-in for the reference preprocessing, and a training that counts calls."""
    calls = []

    def train(x, y, recipe, heldout):
        calls.append(recipe)
        assert x.shape == (len(y), 3, 8, 8) and heldout[0].shape == (len(heldout[1]), 3, 8, 8)
        return _Net(), 0.5, [{"epoch": 1, "loss": 0.1, "heldout_top1": 99.0}]

    monkeypatch.setattr(D, "_inputs", lambda blobs, idx: np.stack(
        [D.decode(blobs[i])[::7, ::7].transpose(2, 0, 1) / np.float32(255) for i in idx]))
    monkeypatch.setattr(D, "train", train)
    return calls


def test_cache_builds_once_then_reuses(tmp_path, stubbed):
    first = D.digits(root=tmp_path)
    assert len(stubbed) == 1 and first.root.parent == tmp_path and first.params.read_bytes() == b"params"
    files = D.heldout_files(first.heldout)
    assert len(files) == first.record["heldout_images"] == 540
    assert sorted({label for _, label in files}) == list(range(10))
    assert all(p.read_bytes()[:2] == b"\xff\xd8" for p, _ in files[:5])
    again = D.digits(root=tmp_path)
    assert len(stubbed) == 1 and again.root == first.root and again.record == first.record
    other = D.digits(replace(D.Recipe(), epochs=1), root=tmp_path)
    assert len(stubbed) == 2 and other.root != first.root  # a new recipe trains into its own folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.root.name, other.root.name])  # no temp left


def test_failed_training_leaves_nothing(tmp_path, stubbed, monkeypatch):
    def boom(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(D, "train", boom)
    with pytest.raises(RuntimeError):
        D.digits(root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cache_is_a_one_line_error(tmp_path, stubbed):
    d = D.digits(root=tmp_path)
    d.params.write_bytes(b"tampered")
    with pytest.raises(D.DigitsError, match="sha256 differs") as err:
        D.digits(root=tmp_path)
    assert str(d.params) in str(err.value) and "\n" not in str(err.value)
    (d.root / D.RECORD).write_text("{")
    with pytest.raises(D.DigitsError, match="not JSON"):
        D.digits(root=tmp_path)


def test_heldout_files_needs_digit_folders(tmp_path):
    with pytest.raises(D.DigitsError, match=str(tmp_path)):
        D.heldout_files(tmp_path)
