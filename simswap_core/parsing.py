"""Face parsing with BiSeNet (``79999_iter.pth``): loading without any download, official preprocessing, regions.

Labels (CelebAMask-HQ, 19 classes): 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye, 6 eyeglasses,
7 l_ear, 8 r_ear, 9 earring, 10 nose, 11 mouth (interior), 12 upper lip, 13 lower lip, 14 neck, 15 necklace,
16 cloth, 17 hair, 18 hat.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CheckpointError, InputError
from .networks.generator import IMAGENET_MEAN, IMAGENET_STD
from .networks.bisenet import NUM_CLASSES, BiSeNet

LABEL_NAMES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eyeglasses", "l_ear", "r_ear",
               "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck", "necklace", "cloth", "hair", "hat")

# Selectable regions -> labels.
REGIONS: dict[str, tuple[int, ...]] = {
    "skin": (1,), "brows": (2, 3), "eyes": (4, 5), "glasses": (6,), "nose": (10,), "lips": (12, 13),
    "mouth": (11,), "ears": (7, 8), "earrings": (9,), "neck": (14,), "hair": (17,), "hat": (18,),
}
# The official paste-back set (no_neck=True): {1-6, 10, 12, 13} plus the mouth interior 11.
OFFICIAL_REGIONS = ("skin", "brows", "eyes", "glasses", "nose", "lips", "mouth")
OFFICIAL_LABELS = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)

PARSER_SIZE = 512


def region_labels(regions) -> tuple[int, ...]:
    """Sorted label ids of region names (see REGIONS); unknown names raise InputError."""
    out: set[int] = set()
    for r in regions:
        key = str(r).strip().lower()
        if key not in REGIONS:
            raise InputError(f"parsing region {r!r} is unknown; expected some of {sorted(REGIONS)}")
        out.update(REGIONS[key])
    return tuple(sorted(out))


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse failure means a bad file
            raise CheckpointError(f"parser weights {path}: not a readable .safetensors file ({e})") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"parser weights {path}: cannot be read as a BiSeNet state dict (torch.load weights_only=True): {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"parser weights {path}: expected a state dict of tensors (like 79999_iter.pth), "
                              f"got {type(obj).__name__}")
    return obj


def load_parser(path: str | os.PathLike, *, device: torch.device | str | None = None) -> BiSeNet:
    """BiSeNet in eval mode with the weights of ``path`` (``79999_iter.pth`` or a converted .safetensors).

    Strict key/shape check (a missing ``num_batches_tracked`` is tolerated); raises FileNotFoundError if absent and
    CheckpointError on a corrupted, truncated or foreign file. Nothing is downloaded.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"parser weights not found: {p} (expected BiSeNet 79999_iter.pth)")
    sd = _state_dict_from_file(p)
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    net = BiSeNet(NUM_CLASSES)
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise CheckpointError(
            f"parser weights {p}: not a 19-class face-parsing BiSeNet state dict; missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatch {bad[:3]}")
    for k, v in own.items():
        if k not in sd:
            sd[k] = v    # num_batches_tracked of files saved by old torch
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    net.eval().requires_grad_(False)
    if device is not None:
        net.to(device)
    return net


@torch.inference_mode()
def parse_faces(parser: torch.nn.Module, crops: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
    """Label maps [F,512,512] int64 of aligned crops [F,3,S,S] RGB [0,1], with the official preprocessing.

    Official: ImageNet mean/std normalisation, then ``F.interpolate(size=512)`` (default NEAREST), BiSeNet main
    head, argmax over the 19 classes. Runs on the parser's device, ``batch_size`` faces at a time.
    """
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise InputError(f"parse_faces: crops must be [F,3,S,S] RGB, got {tuple(crops.shape)}")
    try:
        p = next(parser.parameters())
        dev, dt = p.device, p.dtype
    except StopIteration:
        dev, dt = crops.device, torch.float32
    f = crops.shape[0]
    if f == 0:
        return torch.zeros(0, PARSER_SIZE, PARSER_SIZE, dtype=torch.int64, device=crops.device)
    mean = torch.tensor(IMAGENET_MEAN, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    for i in range(0, f, max(1, int(batch_size))):    # memory chunks, not a per-face loop
        x = (crops[i:i + batch_size].to(dev, torch.float32) - mean) / std
        x = F.interpolate(x, size=(PARSER_SIZE, PARSER_SIZE), mode="nearest")
        logits = parser(x.to(dt))
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        out.append(logits.argmax(1))
    return torch.cat(out).to(crops.device)


def labels_to_mask(labels: torch.Tensor, labels_kept) -> torch.Tensor:
    """[F,h,w] int labels -> [F,1,h,w] float32 1 where the label is in ``labels_kept``."""
    keep = torch.tensor(sorted(set(int(v) for v in labels_kept)), device=labels.device, dtype=labels.dtype)
    return torch.isin(labels, keep).unsqueeze(1).float()
