"""The model installer's command line: ``python install.py ...`` (the repo's script) or
``python -m simswap_core.models.installer_cli ...``.

Without arguments nothing is downloaded: the status of the recommended set is printed (ComfyUI-Manager runs the
script so). Standard library only: the script runs before torch is installed.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError, MissingModelError
from . import catalogue as _cat  # module attributes, read at call time (tests swap the catalogue)
from .catalogue import ModelFile
from .download import DEFAULT_RETRIES, DEFAULT_TIMEOUT, DownloadError
from .find import default_install_dir, fetch_command, find_model, model_search_dirs
from .install import check_model, forget_record, install_model, lock_path, mirror_urls

__all__ = ["main"]

_AUTO_ENV = "SIMSWAP_AUTO_DOWNLOAD"


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    units = ["B", "KiB", "MiB", "GiB"]
    v = float(n)
    for u in units:
        if v < 1024 or u == units[-1]:
            return f"{n:,} B" if u == "B" else f"{v:.1f} {u} ({n:,} B)"
        v /= 1024
    return f"{n:,} B"


def _selected(args: argparse.Namespace) -> list[ModelFile]:
    names: list[str] = []
    if args.all:
        names = list(_cat.CATALOGUE)
    elif args.model:
        names = list(args.model)
    elif args.download:
        names = list(_cat.RECOMMENDED)
    out: list[ModelFile] = []
    for name in names:
        entry = _cat.resolve_entry(name)
        if entry is None:
            raise InputError(f"unknown model {name!r}; known: {', '.join(_cat.CATALOGUE)} (see --list)")
        if entry not in out:
            out.append(entry)
    return out


def _print_list(search: list[Path], out: Callable[[str], None]) -> None:
    out("Model files (* = recommended set):")
    for entry in _cat.CATALOGUE.values():
        try:
            where = f"installed: {find_model(entry.name, search_dirs=search)}"
        except MissingModelError:
            where = "MISSING"
        mark = "*" if entry.recommended else " "
        out(f"{mark} {entry.name:<12} {entry.kind:<9} {entry.relpath}")
        size = _fmt_size(entry.size)
        if entry.archive_member and entry.archive_size is not None:
            size += f"; archive {_fmt_size(entry.archive_size)}"
        out(f"    size: {size}   sha256: {entry.sha256 or 'not published (recorded at first download)'}")
        out(f"    licence: {entry.license}" + ("   [NON-COMMERCIAL]" if entry.noncommercial else ""))
        out(f"    {where}")
        for url in entry.urls:
            out(f"    url: {url}" + (f"  (zip member {entry.archive_member})" if entry.is_archive_url(url) else ""))
    out("Folders searched, in order: " + ", ".join(str(p) for p in search))


def _print_licence_notice(entries: list[ModelFile], out: Callable[[str], None]) -> None:
    nc = [e for e in entries if e.noncommercial]
    if not nc:
        return
    out("LICENCE NOTICE: the following weights are licensed for NON-COMMERCIAL use only:")
    for e in nc:
        out(f"  {e.name} ({e.filename}): {e.license}")
    out("By downloading them you accept these terms. Do not use them, or images made with them, commercially.")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="install.py",
        description=("Download and verify SimSwap model files. Without arguments nothing is downloaded: the status "
                     f"of the recommended set is printed (set {_AUTO_ENV}=1 to download it instead)."),
    )
    p.add_argument("--list", action="store_true", help="list every known file: size, licence, installed or not")
    p.add_argument("--check", action="store_true", help="verify present files against published/recorded sha256")
    p.add_argument("--model", nargs="+", metavar="NAME", help="download these files (names from --list)")
    p.add_argument("--all", action="store_true", help="download every file in the catalogue")
    p.add_argument("--download", action="store_true", help="download the recommended set")
    p.add_argument("--models-dir", metavar="DIR", help="models folder to install into (default: $SIMSWAP_MODELS_DIR, "
                   "else ComfyUI/models when this pack sits in ComfyUI/custom_nodes, else ~/.cache/simswap/models)")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="extra source tried first: a URL prefix or a local folder holding the files or archives")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="network timeout in seconds")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="resume attempts per URL")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-wait", action="store_true",
                   help="refuse at once instead of waiting when another installer is writing the same file")
    p.add_argument("--forget-record", nargs="+", metavar="NAME", default=[],
                   help="forget the size/sha256 recorded at the first download of these files (when the upstream "
                        "file legitimately changed); the files themselves are not touched")
    return p


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Installer CLI; returns the exit code (0 = fine, 1 = a download failed or a file mismatched, 2 = usage)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.retries < 0:
        parser.error("--timeout must be > 0 and --retries >= 0")
    models_dir = Path(args.models_dir).expanduser() if args.models_dir else default_install_dir()
    search = model_search_dirs([models_dir])
    search = [Path(os.path.abspath(models_dir))] + [p for p in search if p != Path(os.path.abspath(models_dir))]
    try:
        entries = _selected(args)
    except InputError as e:
        parser.error(str(e))
        return 2
    auto = os.environ.get(_AUTO_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    did_something = False
    code = 0

    for name in args.forget_record:
        entry = _cat.resolve_entry(name)
        if entry is None:
            parser.error(f"unknown model {name!r}; known: {', '.join(_cat.CATALOGUE)} (see --list)")
            return 2
        removed = forget_record(entry, models_dir)
        if removed is None:
            out(f"No first-download record of {entry.relpath} in {lock_path(models_dir)}: nothing to forget.")
        else:
            out(f"Forgot the record of {entry.relpath} (sha256 {removed.get('sha256')}, {removed.get('size')} B) in "
                f"{lock_path(models_dir)}; the next download is recorded anew after its format check.")
        did_something = True
    if args.list:
        _print_list(search, out)
        did_something = True
    if args.check:
        out("Checking model files:")
        for entry in _cat.CATALOGUE.values():
            checked = check_model(entry, search)
            where = f" {checked.path}" if checked.path else ""
            out(f"  {checked.status.upper():<11} {entry.name}:{where} - {checked.message}")
            if checked.status == "mismatch":
                code = 1
        did_something = True
    if not entries and not did_something and auto:
        out(f"{_AUTO_ENV} is set: downloading the recommended set.")
        entries = [_cat.CATALOGUE[n] for n in _cat.RECOMMENDED]
    if not entries:
        if not did_something:
            _print_status(search, models_dir, out)
        return code

    out(f"Installing into {models_dir}")
    _print_licence_notice(entries, out)
    for entry in entries:
        try:
            res = install_model(entry, models_dir, extra_urls=mirror_urls(entry, args.mirror), timeout=args.timeout,
                                retries=args.retries, progress=not args.no_progress, log=out,
                                wait=not args.no_wait)
            out(f"  OK    {entry.name}: {res.message}")
        except (DownloadError, OSError) as e:
            out(f"  FAIL  {entry.name}: {e}")
            code = 1
        except KeyboardInterrupt:
            out(f"Interrupted. Nothing incomplete was written under a final name; partial downloads (*.part) in "
                f"{models_dir} are resumed when the same command tries the same source again.")
            return 130
    if code:
        out("Some files could not be installed (see above). Files already on disk were not modified.")
    return code


def _print_status(search: list[Path], models_dir: Path, out: Callable[[str], None]) -> None:
    """What ``python install.py`` without arguments prints (ComfyUI-Manager runs it so): status, no download."""
    out("ComfyUI-SimSwap model files (nothing is downloaded without an explicit flag):")
    missing = []
    for name in _cat.RECOMMENDED:
        entry = _cat.CATALOGUE[name]
        try:
            out(f"  found    {name}: {find_model(name, search_dirs=search)}")
        except MissingModelError:
            out(f"  MISSING  {name}: {entry.relpath}")
            missing.append(name)
    if missing:
        out(f"To download the missing recommended files into {models_dir}:")
        out(f"  {fetch_command(missing, models_dir)}")
        out(f"or run install.py with --download, or set {_AUTO_ENV}=1 before installing. "
            "--list shows every file, its size and licence; --check verifies files.")
    else:
        out("All recommended files are present (run with --check to verify them).")


if __name__ == "__main__":  # python -m simswap_core.models.installer_cli
    sys.exit(main())
