"""A straightforward per-frame, per-face SimSwap pipeline, the way the official scripts work.

Built from the same parts as `swap.FaceSwapper` (same detector, alignment, generator, masks, paste) but run
one frame at a time and one face at a time: detect one frame, then for each selected face align it, run the
generator with batch 1, build its mask and paste it onto the frame (later faces over earlier ones, like
`reverse2wholeimage`). It exists as a correctness reference and as the baseline of bench/bench_pipeline.py;
it is deliberately not optimised. Images are [N,3,H,W] float32 RGB in [0,1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from simswap_core.align import align_faces
from simswap_core.detection.select import FaceSelection, select_faces
from simswap_core.errors import InputError, NoFaceError
from simswap_core.identity import Identity, combine_identities, raw_embeddings, reference_distance
from simswap_core.masks import build_crop_masks, official_parsing_crop_masks
from simswap_core.paste import paste_faces
from simswap_core.progress import StageTimer
from simswap_core.swap import run_generator


class ReferencePipeline:
    """Per-frame, per-face SimSwap with the same parts as FaceSwapper (see module doc)."""

    def __init__(self, generator: torch.nn.Module, arcface: torch.nn.Module, detector, *, parser=None,
                 device: torch.device | str | None = None, crop_size: int | None = None,
                 align_mode: str | None = None):
        if device is None:
            device = next(generator.parameters()).device
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.arcface = arcface.to(self.device).eval()
        self.parser = parser
        self.detector = detector
        self.crop_size = int(crop_size or getattr(generator, "crop_size", None) or 224)
        self.align_mode = align_mode
        self.timer = StageTimer(False, self.device)

    @torch.inference_mode()
    def extract_identity(self, images: torch.Tensor, *, select="largest", combine: str = "mean") -> Identity:
        """One image at a time, one face at a time: detect, align, ArcFace (batch 1), then combine."""
        selection = FaceSelection.parse(select)
        lat, emb, weights = [], [], []
        for i in range(images.shape[0]):
            frame = images[i:i + 1].to(self.device, torch.float32)
            with self.timer.stage("detect"):
                faces = self.detector.detect(frame).to(self.device)
            chosen = faces.select(select_faces(faces, selection))
            if len(chosen) == 0:
                raise NoFaceError(f"reference pipeline: no face in source image {i}")
            for f in range(len(chosen)):
                one = chosen.select(torch.tensor([f], device=self.device))
                with self.timer.stage("align"):
                    crop = align_faces(frame, one, self.crop_size, self.align_mode).crops
                with self.timer.stage("identity"):
                    e = raw_embeddings(self.arcface, crop)
                emb.append(e)
                lat.append(F.normalize(e, p=2, dim=1))
                weights.append(one.scores)
        return combine_identities(torch.cat(lat), torch.cat(emb), method=combine,
                                  weights=torch.cat(weights) if combine == "weighted" else None)

    @torch.inference_mode()
    def swap(self, frames: torch.Tensor, identity: Identity, *, select="all", mask=None,
             paste_mode: str = "default", color_match: bool = False, reference: Identity | None = None,
             if_no_face: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (images [N,3,H,W], mask [N,1,H,W]), processing frame by frame and face by face."""
        selection = FaceSelection.parse(select)
        if selection.how == "reference" and reference is None:
            raise InputError("select='reference' needs reference=Identity")
        latent = identity.latent.to(self.device, torch.float32).reshape(1, -1)
        out_images, out_masks = [], []
        for n in range(frames.shape[0]):
            frame = frames[n:n + 1].to(self.device, torch.float32)
            with self.timer.stage("detect"):
                faces = self.detector.detect(frame).to(self.device)
            dist = None
            if selection.how == "reference" and len(faces):
                assert reference is not None        # checked above
                ds = []
                for f in range(len(faces)):
                    one = faces.select(torch.tensor([f], device=self.device))
                    with self.timer.stage("align"):
                        al = align_faces(frame, one, self.crop_size, self.align_mode)
                    with self.timer.stage("identity"):
                        ds.append(reference_distance(self.arcface, al.crops, reference))
                dist = torch.cat(ds)
            keep = select_faces(faces, selection, reference_distance=dist) if len(faces) else None
            chosen = faces.select(keep) if keep is not None else faces
            if len(chosen) == 0:
                if if_no_face == "error":
                    raise NoFaceError(f"reference pipeline: no face in frame {n}")
                out_images.append(frame)
                out_masks.append(frame.new_zeros(1, 1, *frame.shape[-2:]))
                continue
            fmask_total = frame.new_zeros(1, 1, *frame.shape[-2:])
            original = frame  # as the official scripts: every face is cropped from the frame before any paste
            for f in range(len(chosen)):
                one = chosen.select(torch.tensor([f], device=self.device))
                with self.timer.stage("align"):
                    al = align_faces(original, one, self.crop_size, self.align_mode)
                with self.timer.stage("generate"):
                    y = run_generator(self.generator, al.crops, latent, batch_size=1)
                official_parsing = paste_mode == "official" and getattr(mask, "kind", None) == "parsing"
                with self.timer.stage("mask"):
                    cm = None if mask is None else official_parsing_crop_masks(al, self.parser) \
                        if official_parsing else build_crop_masks(al, mask, self.parser)
                with self.timer.stage("paste"):
                    frame, fm = paste_faces(frame, y, al, cm, color_match=color_match, mode=paste_mode)
                fmask_total = torch.maximum(fmask_total, fm)
            out_images.append(frame)
            out_masks.append(fmask_total)
        return torch.cat(out_images), torch.cat(out_masks)
