"""The models of a batch worker: each loaded once and reused by every job that names it, with file hashes.

``simswap swap`` loads its models per call (``cli.common.load_models``, ``load_parser_cli``, ``load_sam_cli``);
a batch worker gives ``cmd_swap`` a ``ModelCache`` instead (``args.model_cache``), which calls those same
functions on the first job that needs a model and returns the loaded module to later jobs with the same
flags. So a job's results are those of ``simswap swap`` with the same flags (same loaders, same weights), and a
swapper actor on a GPU holds each model once. ``files_of(args)`` gives the model files a job used with their size,
modification time and sha256 (hashed once per file and worker), for the manifest.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["ModelCache", "file_record"]

_HASHES: dict[tuple[str, int, int], str] = {}


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """{path, size, mtime_ns, sha256} of a model file (sha256 cached by path, size and mtime in this process)."""
    from ..models.download import sha256_file

    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(p)
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _HASHES[key]}


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


class ModelCache:
    """Models by the flags that choose them (and the files' size / mtime, so a replaced file is loaded again)."""

    def __init__(self) -> None:
        self._core: dict[tuple[Any, ...], tuple[torch.nn.Module, torch.nn.Module, Any]] = {}
        self._parsers: dict[tuple[Any, ...], torch.nn.Module] = {}
        self._sams: dict[tuple[Any, ...], torch.nn.Module | None] = {}
        self.loads = 0                  # how many times a model set was actually loaded (tests, the summary)
        self.last_files: dict[str, Path] = {}   # role -> file of the last ``load``

    @staticmethod
    def _core_paths(args: argparse.Namespace) -> tuple[Path, Path]:
        """The generator and ArcFace files ``cli.common.load_models`` resolves for these flags."""
        from ..cli.common import model_file

        return model_file(args, "generator"), model_file(args, "arcface")

    def _core_key(self, args: argparse.Namespace, dev: torch.device) -> tuple[Any, ...]:
        """What chooses the generator / ArcFace / detector: their files (path, size, mtime), --size, every
        --det* flag (name, threshold, backend), the generator's precision / compile flags and the device."""
        gen, arc = self._core_paths(args)
        detector_flags = tuple(sorted((k, str(v)) for k, v in vars(args).items() if k.startswith("det")))
        # how the generator runs (a compiled or converted module must not leak into a job with other flags)
        run_flags = tuple(str(getattr(args, k, None)) for k in ("precision", "compile", "cuda_graphs", "channels_last"))
        return _stamp(gen), _stamp(arc), args.size, detector_flags, run_flags, str(dev)

    def load(self, args: argparse.Namespace, mask: Any, dev: torch.device) -> tuple[Any, Any, Any, Any, Any]:
        """(generator, arcface, detector, parser or None, sam or None) for ``cmd_swap``: what ``load_models``,
        ``load_parser_cli`` and ``load_sam_cli`` would return for ``args``, loaded once per set of flags."""
        from ..cli.common import load_models, load_parser_cli, model_file
        from ..cli.swap import load_sam_cli

        gen, arc = self._core_paths(args)
        key = self._core_key(args, dev)
        if key not in self._core:
            self._core[key] = load_models(args, dev)
            self.loads += 1
        generator, arcface, detector = self._core[key]
        files = {"generator": gen, "arcface": arc}
        det_path = getattr(detector, "model_path", None)
        if det_path is not None and Path(det_path).is_file():
            files["detector"] = Path(det_path)
        parser = None
        if mask is not None and mask.needs_parser:
            pkey = (args.parser, str(dev))
            if pkey not in self._parsers:
                self._parsers[pkey] = load_parser_cli(args, dev)
            parser = self._parsers[pkey]
            files["parser"] = model_file(args, "parser")
        sam = None
        if mask is not None and mask.needs_sam:
            skey = (args.sam, str(dev))
            if skey not in self._sams:
                self._sams[skey] = load_sam_cli(args, mask, dev)
            sam = self._sams[skey]
            files["sam"] = model_file(args, "sam")
        self.last_files = files
        return generator, arcface, detector, parser, sam

    def files_of_last_job(self) -> dict[str, dict[str, Any]]:
        """{role: file_record} of the model files the last ``load`` used: generator, arcface, detector (its
        ``model_path``), and parser / sam when the job's mask needed them."""
        return {role: file_record(path) for role, path in self.last_files.items()}
