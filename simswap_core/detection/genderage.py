"""Gender and age of detected faces with insightface's ``genderage.onnx`` (model packs buffalo_l/m/s, antelopev2),
run as a torch module built from the ONNX file (default) or with onnxruntime (``backend="onnxruntime"``); our own
pre- and post-processing, written from the public model's inputs and outputs.

The model layout, as far as it can be read from the file and public descriptions of the model:

* input ``[B,3,96,96]`` (B fixed 1 or dynamic; the size is read from the file), RGB channel order;
* the face crop: centred on the detection box, scaled so that the box's longer side * 1.5 spans the input
  (``scale = 96 / (1.5 * max(w, h))``), no rotation, bilinear with a black border (an axis-aligned affine warp);
* pixel values 0..255; the released file starts with its own Sub/Mul normalisation nodes, so the input is fed
  raw (mean 0, std 1); a genderage-like model WITHOUT leading Sub/Mul nodes gets ``(x - 127.5) / 128``;
* output ``[B,3]``: two gender scores (argmax: 0 = female, 1 = male) and the age / 100.

Not verified offline (no real weights here): the exact values the released file gives on a real face, and that
every re-export keeps the leading Sub/Mul nodes; the tests use seeded ONNX models with the same signature.
Licence: insightface's pretrained models are for non-commercial research use only.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..align import warp_faces
from ..errors import CheckpointError, InputError
from ..faces import DetectedFaces
from .backend import DEFAULT_BACKEND, GraphRunner
from .onnx_session import read_onnx_model

__all__ = ["GENDERS", "GenderAgeEstimator", "genderage_crop_matrices", "load_genderage", "looks_like_genderage"]

GENDERS = ("female", "male")   # index = the model's argmax over its two gender scores
BOX_CONTEXT = 1.5              # the crop spans 1.5 x the longer side of the detection box
_EXPECTED = ("expected an insightface-style gender/age model (genderage.onnx: one input [B,3,96,96], one output "
             "[B,3] = two gender scores and age/100)")


def looks_like_genderage(path: str | os.PathLike) -> bool:
    """True when the ONNX file at ``path`` has the genderage signature (one 4-D 3-channel square input, one
    output whose last dimension is 3), read from the graph without creating a session; False for anything else
    (detectors, recognition models, broken files). For model lists."""
    try:
        import onnx

        proto = onnx.ModelProto()
        proto.ParseFromString(read_onnx_model(path))
        ins = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        outs = list(proto.graph.output)
        if len(ins) != 1 or len(outs) != 1:
            return False
        ishape = [d.dim_value or None for d in ins[0].type.tensor_type.shape.dim]
        oshape = [d.dim_value or None for d in outs[0].type.tensor_type.shape.dim]
        return len(ishape) == 4 and ishape[1] == 3 and ishape[2] is not None and ishape[2] == ishape[3] \
            and ishape[2] <= 256 and len(oshape) == 2 and oshape[1] == 3
    except Exception:
        return False


def genderage_crop_matrices(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """[F,4] boxes (x1, y1, x2, y2 frame px) -> [F,2,3] frame -> crop matrices of the genderage crop: the box
    centre goes to the crop centre, scaled so that ``BOX_CONTEXT`` * the box's longer side spans ``size`` px."""
    b = boxes.to(torch.float64 if boxes.device.type == "cpu" else torch.float32)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clamp_min(1e-3)
    s = size / (side * BOX_CONTEXT)
    zero = torch.zeros_like(s)
    m = torch.stack([torch.stack([s, zero, size / 2 - s * cx], -1),
                     torch.stack([zero, s, size / 2 - s * cy], -1)], -2)
    return m.to(torch.float32)


class GenderAgeEstimator:
    """Gender (0 = female, 1 = male) and age (years) of detected faces with a genderage.onnx model.

    ``predict(frames, faces)``: frames ``[B,3,H,W]`` RGB [0,1] (any device), faces the DetectedFaces of those
    frames -> (gender ``[F]`` int64, age ``[F]`` float32), on the faces' device. The crops of all faces are cut
    with one batched warp on the frames' device; the model runs once for all faces (or face by face when the file
    has a fixed batch of 1). backend: "torch" (default; the crops never leave the device) or "onnxruntime"."""

    name = "genderage"

    def __init__(self, model_path: str | os.PathLike, *, device: str | torch.device | None = None,
                 threads: int | None = None, backend: str = DEFAULT_BACKEND):
        self.model_path = Path(model_path)
        self.runner = GraphRunner(self.model_path, device, backend=backend, threads=threads)
        self.backend, self.providers = self.runner.backend, self.runner.providers
        self.session = self.runner.session  # the onnxruntime session (None for the torch backend)
        inputs, outputs = self.runner.input_names, self.runner.output_names
        where = str(self.model_path)
        if len(inputs) != 1 or len(outputs) != 1:
            raise CheckpointError(f"{where}: found {len(inputs)} input(s) and {len(outputs)} output(s); {_EXPECTED}")
        ishape, oshape = self.runner.input_shapes[0], self.runner.output_shapes[0]
        shown_in = ["?" if d is None else d for d in ishape]
        if len(ishape) != 4 or ishape[1] != 3 or ishape[2] is None or ishape[2] != ishape[3] or ishape[2] > 256:
            raise CheckpointError(f"{where}: found input {shown_in}; {_EXPECTED}")
        if len(oshape) != 2 or oshape[1] != 3:
            raise CheckpointError(f"{where}: found output {['?' if d is None else d for d in oshape]}; {_EXPECTED}")
        if "float" not in self.runner.input_types[0]:
            raise CheckpointError(f"{where}: found input type {self.runner.input_types[0]}; {_EXPECTED}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_size = int(ishape[2])
        self.fixed_batch = ishape[0]          # None: dynamic
        self.mean, self.std = (0.0, 1.0) if self._normalises_itself() else (127.5, 128.0)

    def _normalises_itself(self) -> bool:
        """True when the graph starts with Sub and Mul nodes (its own pixel normalisation, as the released
        genderage.onnx): the input is then raw 0..255."""
        import onnx

        proto = onnx.ModelProto()
        proto.ParseFromString(read_onnx_model(self.model_path))
        first = [node.op_type for node in proto.graph.node[:8]]
        return "Sub" in first and "Mul" in first

    def __repr__(self) -> str:
        return f"GenderAgeEstimator({self.model_path.name}, {self.input_size}px, {self.backend}, {self.providers[0]})"

    def crops(self, frames: torch.Tensor, faces: DetectedFaces) -> torch.Tensor:
        """[F,3,S,S] float32 network input (RGB, ``(x*255 - mean) / std``) of every face, on the frames' device."""
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
            raise InputError(f"gender model: frames must be [B,3,H,W] RGB in [0,1], got "
                             f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}")
        faces.check_matches(frames, "gender model: faces")
        s = self.input_size
        dev = frames.device
        matrices = genderage_crop_matrices(faces.boxes.to(dev), s)
        pixels = (frames.float() * 255.0).round_().clamp_(0, 255)      # the 8-bit picture the model knows
        out = warp_faces(pixels, matrices, faces.frame_index.to(dev), s).round_().clamp_(0, 255)
        return (out - self.mean) / self.std

    def scores(self, frames: torch.Tensor, faces: DetectedFaces) -> torch.Tensor:
        """[F,3] raw model outputs (two gender scores, age / 100), float32 on the faces' device."""
        f = len(faces)
        if f == 0:
            return torch.zeros(0, 3, device=faces.device)
        blob = self.crops(frames, faces)
        if self.fixed_batch is None:
            outs = self.runner.run(blob)[:1]
        else:  # a file with a fixed batch (1): one run per face, in chunks of that batch
            b = self.fixed_batch
            pad = (-f) % b
            if pad:
                blob = torch.cat([blob, blob.new_zeros(pad, *blob.shape[1:])])
            outs = [self.runner.run(blob[i:i + b])[0] for i in range(0, blob.shape[0], b)]
        raw = torch.cat([o.float().reshape(o.shape[0], -1) for o in outs])
        if raw.ndim != 2 or raw.shape[1] != 3 or raw.shape[0] < f:
            raise CheckpointError(f"{self.model_path}: returned {tuple(raw.shape)} for {f} face(s); {_EXPECTED}")
        return raw[:f].to(faces.device)

    def predict(self, frames: torch.Tensor, faces: DetectedFaces) -> tuple[torch.Tensor, torch.Tensor]:
        """(gender [F] int64: 0 = female, 1 = male; age [F] float32 in years) of every face."""
        raw = self.scores(frames, faces)
        return raw[:, :2].argmax(1), raw[:, 2] * 100.0

    __call__ = predict


def load_genderage(path: str | os.PathLike, *, device: str | torch.device | None = None,
                   threads: int | None = None, backend: str = DEFAULT_BACKEND) -> GenderAgeEstimator:
    """A :class:`GenderAgeEstimator` for the genderage-style ONNX file at ``path``; CheckpointError naming the
    file when it is not one (wrong inputs/outputs), MissingModelError when it does not exist."""
    from ..errors import MissingModelError

    if not Path(path).is_file():
        raise MissingModelError(f"gender model {path} does not exist; genderage.onnx comes with insightface's "
                                f"buffalo_l pack (models/insightface/models/buffalo_l/; non-commercial licence)")
    return GenderAgeEstimator(path, device=device, threads=threads, backend=backend)
