"""The Paddle oracle for inference-format models: Paddle's own static executor runs the program
from its own files, and any intermediate variable can be fetched.

The executor is used rather than the predictor because only it can fetch intermediates; its final
output equals the predictor's (measured 8.6e-11 max abs on PP-OCRv4 det, IR passes on; the parity
tests keep checking it). Capture points are variable names: the output of the program layer that
owns a source tensor (converters/paddle/program.py groups a conv with its bias add, etc.)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.errors import ParityError
from converters.frameworks import import_paddle
from converters.io.paddle import inference_files, read_program
from converters.paddle import ppdet_io
from converters.paddle.program import first_output_ancestors, layers_of

from ..capture import Captured


class ProgramOracle:
    def __init__(self, source: str | Path):
        self.pdmodel, self.pdiparams = inference_files(source)
        self.paddle = import_paddle()
        self.layer_of = {src: layer for layer in layers_of(str(self.pdmodel)) for src in layer.params.values()}
        needed = first_output_ancestors(read_program(self.pdmodel))
        self.auxiliary = any(layer.out not in needed for layer in layers_of(str(self.pdmodel)))
        with self._static():
            self.exe = self.paddle.static.Executor(self.paddle.CPUPlace())
            prefix = str(self.pdmodel.with_suffix(""))
            self.program, self.feeds, self.fetches = self.paddle.static.load_inference_model(prefix, self.exe)
        # PaddleDetection's export contract (image, im_shape, scale_factor -> bbox, bbox_num), or one image
        self.ppdet = sorted(self.feeds) == sorted(ppdet_io.FEEDS) and len(self.fetches) >= 2
        if len(self.feeds) != 1 and not self.ppdet:
            raise ParityError(f"{self.pdmodel}: inputs {self.feeds}; the oracle feeds one image tensor or "
                              f"PaddleDetection's {', '.join(ppdet_io.FEEDS)}")

    @contextlib.contextmanager
    def _static(self):
        """Static mode is process-wide: restore dygraph for whoever runs next."""
        was_dygraph = self.paddle.in_dynamic_mode()
        self.paddle.enable_static()
        try:
            yield
        finally:
            if was_dygraph:
                self.paddle.disable_static()

    def capture_point(self, source: str) -> str:
        layer = self.layer_of.get(source)
        if layer is None:
            raise KeyError(f"the program has no parameter layer reading {source!r}")
        return layer.out

    def run(self, x: np.ndarray, points: Sequence[str]) -> tuple[Any, Captured]:
        points = list(dict.fromkeys(points))
        with self._static():
            feed = ppdet_io.feeds(x) if self.ppdet else {self.feeds[0]: np.ascontiguousarray(x, np.float32)}
            outs = self.exe.run(self.program, feed=feed, fetch_list=list(self.fetches) + points, return_numpy=True)
        n = len(self.fetches)
        # a one-image program whose extra fetches come from layers the first does not use (PaddleSeg's
        # auxiliary heads): the aligner leaves those out, the target returns the first output only
        main = outs[0] if n == 1 or (not self.ppdet and self.auxiliary) else tuple(outs[:n])
        if self.ppdet:  # -1-padded (ids, scores, boxes) in input pixels, as zooport's detectors return
            main = ppdet_io.pad_detections(np.asarray(outs[0]), np.asarray(outs[1]))
        main = main if isinstance(main, tuple) else np.asarray(main)
        return main, {p: np.asarray(v) for p, v in zip(points, outs[n:])}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The first output through Paddle's deployment predictor (IR passes on), for users who
        want the exact deployment path compared too."""
        paddle = self.paddle
        cfg = paddle.inference.Config(str(self.pdmodel), str(self.pdiparams))
        cfg.disable_gpu()
        cfg.disable_glog_info()
        pred = paddle.inference.create_predictor(cfg)
        handle = pred.get_input_handle(pred.get_input_names()[0])
        handle.copy_from_cpu(np.ascontiguousarray(x, np.float32))
        pred.run()
        return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
