"""Named value transforms, chosen by the *type of the target layer* (never by tensor rank).

A family lists the fix-ups it needs; the engine applies one to a tensor when the target module
owning that tensor is an instance of ``layer_types`` and the parameter name is ``param``."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from torch import nn


@dataclass(frozen=True)
class Fixup:
    name: str
    layer_types: tuple[type[nn.Module], ...]
    param: str
    fn: Callable[[np.ndarray], np.ndarray]
    why: str
    where: str = r"^.*$"  # optional anchored regex on the target module path, e.g. only ``conv1``

    def applies(self, module: nn.Module, path: str, param: str) -> bool:
        return (isinstance(module, self.layer_types) and param == self.param
                and re.fullmatch(self.where, path) is not None)


def _transpose_2d(a: np.ndarray) -> np.ndarray:
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D Linear weight, got shape {a.shape}")
    return np.ascontiguousarray(a.T)


def _flip_rgb_bgr_input(a: np.ndarray) -> np.ndarray:
    if a.ndim != 4 or a.shape[1] != 3:
        raise ValueError(f"expected a conv weight with 3 input channels, got shape {a.shape}")
    return np.ascontiguousarray(a[:, ::-1])


TRANSPOSE_LINEAR = Fixup("transpose_linear", (nn.Linear,), "weight", _transpose_2d,
                         "Paddle stores Linear weights [in, out]; torch wants [out, in]")
BGR_TO_RGB_CONV1 = Fixup("bgr_to_rgb_conv1", (nn.Conv2d,), "weight", _flip_rgb_bgr_input,
                         "fold a BGR-trained first conv into an RGB-input model", where=r"^(backbone\.|stem\.)?conv1$")  # the stem conv only, not every block's conv1
