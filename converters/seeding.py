"""Seeded random source checkpoints, built by the source framework itself and cached on disk."""
from __future__ import annotations

from pathlib import Path

from .errors import ZooportError
from .registry import ModelSpec
from .sources import default_src_dir


def images_tag(spec: ModelSpec) -> str:
    """File-name part for a seed calibrated on fewer photographs: a cached all-photo seed is not it."""
    return f"-i{spec.seed_images}" if spec.seed_images else ""


def seeded_source(spec: ModelSpec, seed: int) -> Path:
    """Path of the seeded checkpoint for ``spec``; built on first use (needs the source framework)."""
    if spec.source_format == "paddle-inference":
        raise ZooportError(f"{spec.name}: --init random is not offered for inference-format models; "
                           "their real weights ship with the installed package (omit --init)")
    if spec.framework == "paddle":
        from .paddle import seeded as paddle_seeded  # builds with paddle itself
        return paddle_seeded.seeded_source(spec, seed, default_src_dir() / "seeded")
    if spec.framework == "detectron":  # Caffe2 cannot be installed: Detectron's naming scheme, seeded values
        from .detectron import seeded as detectron_seeded
        return detectron_seeded.seeded_source(spec.name, seed, default_src_dir() / "seeded")
    if spec.framework != "gluon":
        raise ZooportError(f"{spec.name}: no seeded-source builder for framework {spec.framework!r}")
    from .gluon import seeded
    path = default_src_dir() / "seeded" / f"{spec.name}-seed{seed}-r{seeded.SEED_FORMAT}{images_tag(spec)}.params"
    if not path.exists():
        seeded.build(spec.source_model, seed, path, spec.seed_size or spec.preprocess.size,
                     dict(spec.seed_output_std), spec.get_model_kwargs, per_image=spec.single_image,
                     images=spec.seed_images)
    return path
