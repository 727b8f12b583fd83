"""Which engine runs an ONNX face model: our torch module (default, `OnnxGraphModule`) or onnxruntime (optional).

Both give the same interface (`GraphRunner`): declared input/output shapes, and ``run(blob) -> [outputs]``. The
torch backend keeps everything on its device (a CUDA blob never visits the host); onnxruntime takes and returns
host arrays (its outputs come back as CPU tensors). onnxruntime is imported only when that backend is chosen.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import InputError
from .onnx_session import resolve_device

BACKENDS = ("torch", "onnxruntime")
DEFAULT_BACKEND = "torch"


def check_backend(backend: str | None, what: str = "detector backend") -> str:
    """``backend`` lower-cased if it is one of `BACKENDS` (None: the default), else InputError naming it."""
    name = DEFAULT_BACKEND if backend is None else str(backend).strip().lower()
    if name == "ort":
        name = "onnxruntime"
    if name not in BACKENDS:
        raise InputError(f"{what}: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return name


class GraphRunner:
    """One ONNX graph run by ``backend`` on ``device`` (None: CUDA when torch sees a GPU, else CPU).

    model: a path or serialized bytes (block-quantised files are folded to fp32 first by the torch backend; pass
    `onnx_fold.prepare_onnx`'s result for onnxruntime). Attributes: ``input_names``, ``output_names``,
    ``input_shapes``/``output_shapes`` (declared dims, None where free), ``providers`` (onnxruntime's providers,
    or ``["torch:<device>"]``), ``device`` (where outputs are: the torch device, CPU for onnxruntime).
    """

    def __init__(self, model: str | os.PathLike | bytes, device: str | torch.device | None = None, *,
                 backend: str = DEFAULT_BACKEND, threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        self.backend = check_backend(backend)
        dev = resolve_device(device)
        if self.backend == "torch":
            from ..networks.onnx_graph import OnnxGraphModule

            if isinstance(model, bytes):
                from .onnx_session import read_onnx_model

                net = OnnxGraphModule.from_bytes(read_onnx_model(model))
            else:
                net = OnnxGraphModule.from_file(model, cache_dir=cache_dir)
            # channels_last: oneDNN (CPU) and cuDNN run these small convs faster in NHWC (measured 1.9x for YuNet on
            # the CPU); the results are the same up to float rounding
            net.to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stub lacks it)
            self.net: OnnxGraphModule | None = net.eval()
            self.session = None
            self.device = dev
            self.providers = [f"torch:{dev}"]
            self.input_names, self.output_names = list(net.input_names), list(net.output_names)
            self.input_shapes, self.output_shapes = net.input_shapes, net.output_shapes
        else:
            from .onnx_session import create_session

            self.net = None
            self.session, self.providers = create_session(model, dev, threads=threads)
            self.device = torch.device("cpu")
            ins, outs = self.session.get_inputs(), self.session.get_outputs()
            self.input_names, self.output_names = [i.name for i in ins], [o.name for o in outs]
            self.input_shapes = [_dims(i.shape) for i in ins]
            self.output_shapes = [_dims(o.shape) for o in outs]
        self.input_types = self._input_types()

    def _input_types(self) -> list[str]:
        if self.session is not None:
            return [str(i.type) for i in self.session.get_inputs()]
        assert self.net is not None
        names = {1: "tensor(float)", 10: "tensor(float16)", 11: "tensor(double)", 16: "tensor(bfloat16)"}
        return [names.get(t, f"tensor(onnx type {t})") for t in self.net.input_elem_types]

    def run(self, blob: torch.Tensor) -> list[torch.Tensor]:
        """Outputs (graph order) for the first input ``blob`` (float32): on ``self.device`` for torch; CPU float32
        tensors for onnxruntime (one host round trip)."""
        if self.net is not None:
            x = blob.to(self.device, torch.float32)
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                return list(self.net(x))
        assert self.session is not None
        arr = np.ascontiguousarray(blob.detach().to("cpu", torch.float32).numpy())
        outs = self.session.run(self.output_names, {self.input_names[0]: arr})
        return [torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in outs]


def _dims(shape: object) -> list[int | None]:
    """onnxruntime shape -> ints, None for symbolic or unknown dimensions."""
    return [d if isinstance(d, int) and d > 0 else None for d in (shape or [])]  # type: ignore[attr-defined]
