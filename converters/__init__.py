"""zooport converters: checkpoints from MXNet/Gluon (and later Paddle, Detectron) to PyTorch.

Stable API: ``available()``, ``convert(name, weights=None, init=None, seed=0)``, ``load(name, path)``.
"""
__version__ = "0.1.0"


def available() -> list[str]:
    from . import registry
    return registry.names()


def convert(name, weights=None, init=None, seed=0, **kwargs):
    from .pipeline import convert as _convert
    return _convert(name, weights=weights, init=init, seed=seed, **kwargs)


def load(name, path, target="zooport", nms=None):
    from .pipeline import load as _load
    return _load(name, path, target=target, nms=nms)


__all__ = ["available", "convert", "load", "__version__"]
