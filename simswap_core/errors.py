"""Exceptions raised by simswap_core. Each names the input at fault and what was expected."""
from __future__ import annotations


class SimSwapError(Exception):
    """Base class of every error raised on purpose by simswap_core."""


class InputError(SimSwapError, ValueError):
    """An argument (image, tensor, option string) is not what the function expects."""


class CheckpointError(SimSwapError, ValueError):
    """A model file is corrupted, truncated, of the wrong kind, or would need unsafe unpickling."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle inside a model file asked for a global that is not on the allow-list (nothing was executed)."""


class MissingModelError(SimSwapError, FileNotFoundError):
    """A model file could not be found; the message names the file, the folders searched and the fetch command."""


class OutputError(SimSwapError, OSError):
    """An output could not be written (disk full, no permission); names the output, never a temporary file."""


class NoFaceError(SimSwapError, ValueError):
    """No face was found (or none matched the selection) where one was required."""


class DependencyError(SimSwapError, ImportError):
    """An optional runtime (e.g. onnxruntime) needed for this feature is not installed."""
