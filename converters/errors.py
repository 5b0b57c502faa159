"""Typed errors. ``str(err)`` is always one line; ``err.hint`` says what to do next."""
from __future__ import annotations

from pathlib import Path


class ZooportError(Exception):
    """Base of every error zooport raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(" ".join(message.split()))
        if hint:
            self.hint = hint


class ReaderError(ZooportError):
    """A checkpoint file is malformed; names the file, the tensor and the byte offset when known."""

    hint = "the file is not a valid checkpoint of this format (truncated download? wrong file?)"

    def __init__(self, path: str | Path, message: str, *, offset: int | None = None,
                 tensor: str | None = None):
        self.path, self.offset, self.tensor = str(path), offset, tensor
        where = f" (tensor {tensor!r})" if tensor is not None else ""
        at = f" at byte offset {offset}" if offset is not None else ""
        super().__init__(f"{path}: {message}{where}{at}")


class MappingError(ZooportError):
    """Every problem found while mapping source tensors onto a target, raised together."""

    hint = "the checkpoint does not match this model's architecture or rules"

    def __init__(self, model: str, problems: list[str]):
        self.model, self.problems = model, list(problems)
        shown = "; ".join(self.problems[:8])
        more = f"; ... (+{len(self.problems) - 8} more)" if len(self.problems) > 8 else ""
        super().__init__(f"{model}: {len(self.problems)} mapping problem(s): {shown}{more}")


class UnknownModel(ZooportError):
    hint = "run `zooport list` to see the registered models"


class WeightsNotFound(ZooportError):
    pass


class DownloadError(ZooportError):
    pass


class OutputError(ZooportError):
    hint = "check that the output directory exists, is writable and has free space"


class ParityError(ZooportError):
    pass
