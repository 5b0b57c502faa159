"""A real-data checkpoint made offline: gluoncv's cifar_resnet20_v1 trained in MXNet on scikit-learn's
bundled handwritten digits (1797 real 8x8 scans, shipped in the wheel), so end-to-end accuracy can be
compared across frameworks and preprocessing variants without any download.

The held-out digits are written as JPEG files (class per folder), upscaled to a side that is not 32 so
that every preprocessing variant has a decode and a resize to do. The training images went through the
same files' bytes and the same ``mxnet`` pipeline the evaluation uses.

Everything lands in ``weights/digits/<tag>/``: the tag is the format version plus a hash of the recipe,
of every image's JPEG bytes and of a few preprocessed training tensors (a probe of the pipeline: hashing
all of them costs seconds per test run), so a change in any of these retrains. The folder is built
under a temporary name and renamed into place, so a reader never sees half of it."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from converters.errors import ZooportError
from converters.sources import ROOT

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout or the training code changes meaning
MODEL = "cifar_resnet20_v1"
PARAMS = f"{MODEL}-digits.params"
RECORD = "train.json"
DEFAULT_ROOT = ROOT / "weights" / "digits"
PROBE = 16  # training images whose preprocessed tensors enter the tag


class DigitsError(ZooportError):
    """The digits cache is unusable (missing dependency or a malformed cache folder)."""


@dataclass(frozen=True)
class Recipe:
    heldout: float = 0.3  # stratified fraction never trained on
    side: int = 56        # saved image side: the 8x8 scans upscaled (bicubic); eval resizes to 32
    quality: int = 95     # JPEG quality of the images (training bytes and held-out files alike)
    epochs: int = 8       # about a minute on 2 cores (67-96 s with other jobs); ~99% held-out top-1
    batch: int = 64
    lr: float = 0.1       # SGD with momentum, cosine decay to 0
    momentum: float = 0.9
    wd: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class Digits:
    root: Path      # weights/digits/<tag>
    params: Path    # the trained gluon checkpoint (structural names, as save_parameters writes)
    heldout: Path   # <class>/<index>.jpg, one folder per digit
    record: dict    # train.json: recipe, training seconds, MXNet accuracies at training time, sha256


# -- data: no framework needed ------------------------------------------------------------------
def scans() -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 8) float scans with ink 0..16, (N,) int labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DigitsError("scikit-learn is not importable: it ships the handwritten digits",
                          hint="run `make setup`") from exc
    d = load_digits()
    return d.images, d.target.astype(np.int64)


def split(labels: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, held-out) indices: stratified, fixed by the recipe's seed."""
    from sklearn.model_selection import train_test_split
    train, held = train_test_split(np.arange(len(labels)), test_size=recipe.heldout,
                                   stratify=labels, random_state=recipe.seed)
    return np.sort(train), np.sort(held)


def encode(scan: np.ndarray, recipe: Recipe) -> bytes:
    """One scan as a grey JPEG photograph of the digit (white ink on black), recipe.side pixels."""
    import cv2
    ink = np.clip(np.round(scan * (255 / 16)), 0, 255).astype(np.uint8)
    big = cv2.resize(ink, (recipe.side, recipe.side), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", np.repeat(big[..., None], 3, axis=2),
                           [cv2.IMWRITE_JPEG_QUALITY, recipe.quality])
    if not ok:
        raise DigitsError("OpenCV could not encode a digit as JPEG")
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB, decoded by OpenCV (libmxnet's decoder) as the `mxnet` variant decodes files."""
    import cv2
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1])


def tag(recipe: Recipe, blobs: list[bytes], probe: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "model": MODEL, **asdict(recipe)}, sort_keys=True).encode())
    for b in blobs:
        h.update(hashlib.sha256(b).digest())
    h.update(np.ascontiguousarray(probe, np.float32).tobytes())
    return f"v{FORMAT}-{h.hexdigest()[:12]}"


def heldout_files(folder: Path) -> list[tuple[Path, int]]:
    """(path, label) of every held-out image, in a fixed order."""
    out = [(p, int(p.parent.name)) for p in sorted(Path(folder).glob("[0-9]/*.jpg"))]
    if not out:
        raise DigitsError(f"{folder}: no <digit>/<index>.jpg images")
    return out


# -- the cached checkpoint ----------------------------------------------------------------------
def digits(recipe: Recipe = Recipe(), root: str | Path | None = None) -> Digits:
    """The trained checkpoint and held-out folder for ``recipe``; trains (~1 min of CPU) when absent."""
    images, labels = scans()
    blobs = [encode(scan, recipe) for scan in images]
    train_idx, held = split(labels, recipe)
    final = Path(root or DEFAULT_ROOT) / tag(recipe, blobs, _inputs(blobs, train_idx[:PROBE]))
    if not (final / RECORD).is_file():
        files = {int(i): (blobs[i], int(labels[i])) for i in held}
        _build(final, recipe, (_inputs(blobs, train_idx), labels[train_idx]),
               (_inputs(blobs, held), labels[held]), files)
    try:
        record = json.loads((final / RECORD).read_text())
    except ValueError as exc:
        raise DigitsError(f"{final / RECORD}: not JSON ({exc}); delete {final} to retrain") from exc
    params = final / PARAMS
    if _sha256(params) != record.get("params_sha256"):
        raise DigitsError(f"{params}: sha256 differs from {final / RECORD}; delete {final} to retrain")
    return Digits(final, params, final / "heldout", record)


def _inputs(blobs: list[bytes], indices: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) float32 by the reference (`mxnet`) pipeline, as the evaluation runs it on files."""
    from converters import registry
    from parity.preprocess import preprocess
    spec = registry.get(MODEL).preprocess
    return np.stack([preprocess(decode(blobs[i]), spec, "mxnet").numpy() for i in indices])


def _build(final: Path, recipe: Recipe, train_xy: tuple, held_xy: tuple, files: dict) -> None:
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "heldout").mkdir(parents=True)
    try:
        for index, (data, label) in files.items():
            (tmp / "heldout" / str(label)).mkdir(exist_ok=True)
            (tmp / "heldout" / str(label) / f"{index:04d}.jpg").write_bytes(data)
        net, seconds, history = train(*train_xy, recipe, held_xy)
        net.save_parameters(str(tmp / PARAMS))
        record = {"format": FORMAT, "model": MODEL, "recipe": asdict(recipe), "train_images": len(train_xy[1]),
                  "heldout_images": len(held_xy[1]), "train_seconds": round(seconds, 1), "epochs": history,
                  "params_sha256": _sha256(tmp / PARAMS), "versions": _versions()}
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same tag first: theirs is as good as ours
            if not (final / RECORD).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train(x: np.ndarray, y: np.ndarray, recipe: Recipe, heldout: tuple[np.ndarray, np.ndarray]):
    """Plain SGD on the fixed tensors, seeded; returns (net, seconds, per-epoch log)."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    mx.random.seed(recipe.seed)
    rng = np.random.RandomState(recipe.seed)
    net = gcv.model_zoo.get_model(MODEL, classes=10, pretrained=False)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()  # ~2x faster; the saved parameter names are the same
    steps = recipe.epochs * -(-len(y) // recipe.batch)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=steps, base_lr=recipe.lr, final_lr=0)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {
        "learning_rate": recipe.lr, "momentum": recipe.momentum, "wd": recipe.wd, "lr_scheduler": schedule})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    history, start = [], time.perf_counter()
    for epoch in range(recipe.epochs):
        order, total = rng.permutation(len(y)), 0.0
        for b in range(0, len(y), recipe.batch):
            batch = order[b:b + recipe.batch]
            with mx.autograd.record():
                loss = loss_fn(net(mx.nd.array(x[batch])), mx.nd.array(y[batch]))
            loss.backward()
            trainer.step(len(batch))
            total += float(loss.sum().asscalar())
        top1 = 100 * float((net(mx.nd.array(heldout[0])).asnumpy().argmax(1) == heldout[1]).mean())
        history.append({"epoch": epoch + 1, "loss": round(total / len(y), 4), "heldout_top1": round(top1, 2)})
        log.info("digits epoch %d/%d: loss %.4f, held-out top-1 %.2f%%", epoch + 1, recipe.epochs,
                 total / len(y), top1)
    return net, time.perf_counter() - start, history


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("mxnet", "gluoncv", "scikit-learn", "opencv-python-headless", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise DigitsError(f"{path}: missing from the digits cache; delete its folder to retrain")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """`python -m parity.digits`: train (or find) the cached checkpoint and print where it is."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=None, help=f"cache folder (default {DEFAULT_ROOT})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    d = digits(root=args.root)
    last = d.record["epochs"][-1]
    print(f"{d.params}\n{d.heldout} ({d.record['heldout_images']} images), trained in "
          f"{d.record['train_seconds']} s, MXNet held-out top-1 {last['heldout_top1']}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
