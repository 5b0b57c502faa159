"""PaddleClas / PaddleX AlexNet -> converters.arch.classic.AlexNet(paddle=True).

Source net: ppcls ``model_zoo/alexnet.py`` (PaddleClas 2.x): gluoncv's and torchvision's layers
(convs 11x11/4 pad 2 -> 64, 5x5 pad 2 -> 192, 3x3 pad 1 -> 384, 256, 256, each with a bias and a
ReLU; 3x3/2 floor-mode max pools after conv 1, 2 and 5; flatten; fc6, fc7 with ReLU; fc8), with
Paddle's ``Dropout(0.5, mode="downscale_in_infer")`` before fc6 and fc7: at inference x * 0.5, so
torchvision's module (identity Dropouts) is not the same network and is not offered.

Two layouts: "dygraph" (``paddle.save`` of the ppcls state dict: ``_conv<1|2|5>._conv`` (conv + pool
layers), ``_conv3``, ``_conv4``, ``_fc6``..``_fc8``, each ``.weight``/``.bias``) and "fluid" (PaddleX's
.tar: PaddleClas 1.x static names, which ppcls passes to every parameter: ``conv<k>_weights`` /
``conv<k>_offset``, ``fc<k>_weights`` / ``fc<k>_offset``; Linear weights [in, out])."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.classic import AlexNet
from .paddlex import Tensor, layout_tables, register_classifier

# (ppcls dygraph path, static name, our module): features indices as torchvision's
LAYERS = (("_conv1._conv", "conv1", "features.0"), ("_conv2._conv", "conv2", "features.3"),
          ("_conv3", "conv3", "features.6"), ("_conv4", "conv4", "features.8"),
          ("_conv5._conv", "conv5", "features.10"),
          ("_fc6", "fc6", "classifier.1"), ("_fc7", "fc7", "classifier.4"), ("_fc8", "fc8", "classifier.6"))


def tensors() -> Iterator[Tensor]:
    for dy, st, ours in LAYERS:
        kind = "Linear weight stored [in, out]" if st.startswith("fc") else "conv"
        yield Tensor(f"{dy}.weight", f"{st}_weights", f"{ours}.weight", f"{st} {kind}")
        yield Tensor(f"{dy}.bias", f"{st}_offset", f"{ours}.bias", f"{st} bias")


def fluid_names() -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves)."""
    return layout_tables(tensors())[2]


_DYGRAPH, _FLUID, _ = layout_tables(tensors())
register_classifier(
    "AlexNet", "paddle.alexnet", functools.partial(AlexNet, paddle=True), dygraph=_DYGRAPH, fluid=_FLUID,
    source_model="AlexNet", stem="AlexNet_pretrained", top1=56.7, top5=79.2,
    seed_output_std={"_fc8": 3.0},
    notes=("PaddleClas AlexNet: torchvision's layers and Dropout places, but Paddle's Dropout(0.5, "
           "downscale_in_infer) scales by 0.5 at inference before fc6 and fc7; input 224x224 only "
           "(flatten to 9216, no adaptive pool); fc weights stored [in, out].",),
    # in CI despite 61M parameters (parity/selection.py's 40M policy): measured cheap, 0.7 GFLOPs;
    # seeded build ~4 s, verify on 6 photographs ~15 s on 2 cores
    slow=False)
