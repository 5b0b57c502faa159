"""CTC greedy decoding with PP-OCR's character table: index 0 is the blank, then the dictionary's
lines in order, then a space (PP-OCR's use_space_char)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_charset(path: str | Path, space: bool = True) -> list[str]:
    chars = [line.rstrip("\r\n") for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return ["<blank>", *chars, *([" "] if space else [])]


def ctc_greedy(probs: np.ndarray, charset: list[str]) -> list[tuple[str, float]]:
    """(text, confidence) per line of ``probs`` (N, T, C): argmax per step, repeats merged, blanks
    dropped; confidence is the mean of the kept steps' maxima (0 when none is kept)."""
    if probs.shape[-1] != len(charset):
        raise ValueError(f"the model predicts {probs.shape[-1]} classes, the charset has {len(charset)}")
    out = []
    for line in probs:
        idx, best = line.argmax(-1), line.max(-1)
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        text = "".join(charset[i] for i in idx[keep])
        out.append((text, float(best[keep].mean()) if keep.any() else 0.0))
    return out
