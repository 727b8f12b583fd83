"""ONNX export of the SimSwap generator and of its ArcFace identity encoder, with the names other tools use.

Generator (``export_generator``), batch axis dynamic (``batch``), crop size fixed (the checkpoint's):

    names="facefusion" (default): inputs ``target`` [N,3,S,S] float32, ``source`` [N,512] float32; output
        ``output`` [N,3,S,S] float32 RGB [0,1]. These are the names FaceFusion's face_swapper feeds by name for its
        ``simswap_256`` / ``simswap_512_unofficial`` models (it reads the first output, whatever its name).
    names="rope": inputs ``input`` [N,3,S,S], ``onnx::Gemm_1`` [N,512]; output ``output``: the names Rope /
        VisoMaster bind for their ``SimSwap512`` model (``simswap_512_unoff.onnx``).

    ``source`` is the unit-norm identity latent (``Identity.latent``: the L2-normalised SimSwap ArcFace embedding);
    ``target`` is the aligned crop, RGB (not BGR). input_norm="unit" (default): target RGB in [0,1] (FaceFusion's
    simswap_512_unofficial: mean 0, std 1; Rope's SimSwap512). input_norm="imagenet": target ImageNet
    mean/std-normalised RGB (FaceFusion's simswap_256 convention: mean (0.485, 0.456, 0.406), std (0.229, 0.224,
    0.225)). The output is RGB [0,1] either way (FaceFusion does not de-normalise simswap outputs).

ArcFace identity encoder (``export_arcface``): input ``input`` [N,3,112,112] float32 RGB in [0,1] (the
ImageNet normalisation is inside the graph; the official 224 -> 112 nearest resize is the caller's), outputs
``output`` [N,512] raw embedding (what FaceFusion-style recognisers return as their first output; the reference
selection's MSE uses it) and ``latent`` [N,512] L2-normalised (the generator's ``source``).

Opset 17 by default (any 11..21 the exporter knows; ReflectionPad needs >= 11). precision="fp16" stores the
weights and runs the graph in float16 with float32 inputs and outputs (casts at the edges), as FaceFusion's
``*_fp16`` models do; bf16 is not exported (ONNX runtimes lack bf16 convolutions; build a TensorRT engine from the
fp32 file with bf16 enabled instead, ``simswap_core.tensorrt``). The exporter is torch's TorchScript-based
``torch.onnx.export(dynamo=False)``: it needs no onnxscript. Files are written atomically and read back with
``onnx.checker``; ``check_onnx`` runs them with onnxruntime (optional) against torch.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, DependencyError, InputError
from .io.atomic import atomic_write
from .networks.generator import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "ARCFACE_NAMES",
    "DEFAULT_OPSET",
    "GENERATOR_NAMES",
    "ExportResult",
    "GeneratorGraph",
    "check_onnx",
    "export_arcface",
    "export_generator",
]

#: generator input/output names per convention: ((crop input, latent input), (output,))
GENERATOR_NAMES: dict[str, tuple[tuple[str, str], tuple[str]]] = {
    "facefusion": (("target", "source"), ("output",)),
    "rope": (("input", "onnx::Gemm_1"), ("output",)),
}
ARCFACE_NAMES: tuple[tuple[str], tuple[str, str]] = (("input",), ("output", "latent"))
DEFAULT_OPSET = 17
EXPORT_PRECISIONS = ("fp32", "fp16")
INPUT_NORMS = ("unit", "imagenet")
#: largest |torch - onnxruntime| accepted by ``check_onnx`` per precision (outputs in [0,1] / embeddings)
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


@dataclass
class ExportResult:
    """What ``export_*`` wrote: path, input/output names, opset, precision, the input shapes traced with (batch
    dynamic), and after ``check_onnx`` the max |torch - onnxruntime| per output."""

    path: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    precision: str
    shapes: tuple[tuple[int, ...], ...]
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    reference: nn.Module | None = field(default=None, repr=False)  # the same graph in torch fp32 on the CPU

    def describe(self) -> str:
        shapes = ", ".join(f"{n} {list(s)}" for n, s in zip(self.inputs, self.shapes))
        return (f"{self.path} (opset {self.opset}, {self.precision}; inputs {shapes} with a dynamic batch; "
                f"outputs {', '.join(self.outputs)})")


class GeneratorGraph(nn.Module):
    """What the exported generator computes: (target [N,3,S,S], source [N,512]) float32 -> RGB [0,1] [N,3,S,S]
    float32 (see the module docstring); ``generator`` holds weights in ``dtype`` and runs in it (casts at the
    edges). Also what ``tensorrt.compile_torch_tensorrt`` compiles."""

    mean: torch.Tensor  # [1,3,1,1] ImageNet mean / std (non-persistent buffers)
    std: torch.Tensor

    def __init__(self, generator: nn.Module, input_norm: str = "unit", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.generator, self.imagenet, self.dtype = generator, input_norm == "imagenet", dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        if self.imagenet:
            target = target * self.std + self.mean
        return self.generator(target.to(self.dtype), source.to(self.dtype)).float()


class _ArcFaceGraph(nn.Module):
    """What the exported encoder computes: RGB [0,1] [N,3,112,112] -> (raw embedding, unit latent)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, arcface: nn.Module, half: bool):
        super().__init__()
        self.arcface, self.in_half = arcface, half
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        emb = self.arcface(x.half() if self.in_half else x).float()
        return emb, F.normalize(emb, p=2, dim=1)


def _check_common(opset: object, precision: object) -> tuple[int, str]:
    if isinstance(opset, bool) or not isinstance(opset, int) or not 11 <= opset <= 21:
        raise InputError(f"opset: expected an ONNX opset 11..21 (default {DEFAULT_OPSET}), got {opset!r}")
    if precision not in EXPORT_PRECISIONS:
        raise InputError(f"precision: expected fp32 or fp16 for an ONNX export (bf16: build a TensorRT engine "
                         f"with bf16 from the fp32 file), got {precision!r}")
    return int(opset), str(precision)


def _set_output_shapes(model: object, shapes: Sequence[Sequence[int]]) -> None:
    """Declare each graph output's shape as [batch, *shape[1:]] (the TorchScript exporter's own inference names
    fixed axes of the generator's output after its symbols, e.g. [batch, 3, batch, ...])."""
    for value, shape in zip(model.graph.output, shapes):  # type: ignore[attr-defined]
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for k, size in enumerate(shape):
            d = dims.add()
            if k == 0:
                d.dim_param = "batch"
            else:
                d.dim_value = int(size)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: str | os.PathLike, inputs: Sequence[str],
            outputs: Sequence[str], opset: int, overwrite: bool) -> Path:
    """Trace ``module`` on ``args`` (CPU, eval, no grad) into ``path`` atomically; batch axis 0 dynamic, the
    outputs' other axes declared fixed (their traced sizes)."""
    import onnx

    dynamic = {name: {0: "batch"} for name in (*inputs, *outputs)}
    with torch.no_grad():
        traced = module(*args)
    out_shapes = [tuple(t.shape) for t in (traced if isinstance(traced, (tuple, list)) else (traced,))]

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # the TorchScript exporter's deprecation and tracer warnings
            with torch.no_grad():
                torch.onnx.export(module, args, str(tmp), dynamo=False, input_names=list(inputs),
                                  output_names=list(outputs), dynamic_axes=dynamic, opset_version=opset,
                                  do_constant_folding=True, external_data=False)
        model = onnx.load(str(tmp))
        _set_output_shapes(model, out_shapes)
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)

    return atomic_write(path, write, overwrite=overwrite)


def _cpu_copy(module: nn.Module, half: bool) -> nn.Module:
    """A CPU, eval-mode copy of ``module`` (the caller's module is not changed), float16 weights if ``half``."""
    import copy

    m = copy.deepcopy(module).to("cpu").eval()
    return m.half() if half else m.float()


def export_generator(generator: nn.Module, path: str | os.PathLike, *, names: str = "facefusion",
                     input_norm: str = "unit", opset: int = DEFAULT_OPSET, precision: str = "fp32",
                     crop_size: int | None = None, overwrite: bool = False) -> ExportResult:
    """Write the generator (a ``SimSwapGenerator``, any variant) to ``path`` as ONNX: see the module docstring for
    the names, ranges and conventions. crop_size: the fixed crop S (default: the generator's ``crop_size``)."""
    if names not in GENERATOR_NAMES:
        raise InputError(f"names: expected one of {', '.join(GENERATOR_NAMES)}, got {names!r}")
    if input_norm not in INPUT_NORMS:
        raise InputError(f"input_norm: expected unit (RGB [0,1]) or imagenet (mean/std-normalised), got "
                         f"{input_norm!r}")
    opset, precision = _check_common(opset, precision)
    size = int(crop_size or getattr(generator, "crop_size", 0) or 224)
    multiple = getattr(getattr(generator, "config", None), "size_multiple", 8)
    if size < 16 or size % multiple:
        raise InputError(f"crop_size: expected a multiple of {multiple} (the generator's down-sampling), got {size}")
    half = precision == "fp16"
    graph = GeneratorGraph(_cpu_copy(generator, half), input_norm, torch.float16 if half else torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, size, size, generator=g)
    if input_norm == "imagenet":
        target = (target - graph.mean) / graph.std
    source = F.normalize(torch.randn(2, 512, generator=g), dim=1)
    (i_crop, i_latent), outs = GENERATOR_NAMES[names]
    out = _export(graph, (target, source), path, (i_crop, i_latent), outs, opset, overwrite)
    reference = graph if not half else GeneratorGraph(_cpu_copy(generator, False), input_norm).eval()
    return ExportResult(out, (i_crop, i_latent), outs, opset, precision, ((-1, 3, size, size), (-1, 512)),
                        reference=reference)


def export_arcface(arcface: nn.Module, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                   precision: str = "fp32", overwrite: bool = False) -> ExportResult:
    """Write SimSwap's ArcFace encoder to ``path`` as ONNX: input ``input`` RGB [0,1] [N,3,112,112], outputs
    ``output`` (raw embedding [N,512]) and ``latent`` (unit norm [N,512])."""
    opset, precision = _check_common(opset, precision)
    half = precision == "fp16"
    graph = _ArcFaceGraph(_cpu_copy(arcface, half), half).eval()
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    ins, outs = ARCFACE_NAMES
    out = _export(graph, (x,), path, ins, outs, opset, overwrite)
    reference = graph if not half else _ArcFaceGraph(_cpu_copy(arcface, False), False).eval()
    return ExportResult(out, ins, outs, opset, precision, ((-1, 3, 112, 112),), reference=reference)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise DependencyError("checking an exported ONNX file needs onnxruntime: pip install onnxruntime (CPU) "
                              "or onnxruntime-gpu") from e
    return onnxruntime


def check_onnx(result: ExportResult,
               reference: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]] | None = None, *,
               batch: int = 3, seed: int = 0, tolerance: float | None = None) -> dict[str, float]:
    """Run the exported file with onnxruntime (CPU) on ``batch`` random inputs (a batch size other than the one
    traced, so the dynamic axis is exercised: crops uniform in [0,1], latents random unit vectors) and compare
    every output with ``reference(*inputs)`` (default ``result.reference``: the same graph in torch fp32 on the
    CPU); returns {output name: max |difference|} (also stored in ``result.max_abs_diff``). CheckpointError when a
    difference is above ``tolerance`` (default ``TOLERANCE[result.precision]``)."""
    ort = _onnxruntime()
    reference = reference or result.reference
    if reference is None:
        raise InputError("reference: expected the torch module the file was exported from")
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for shape in result.shapes:
        full = (batch, *shape[1:])
        inputs.append(torch.rand(full, generator=g) if len(full) == 4 else
                      F.normalize(torch.randn(full, generator=g), dim=1))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(list(result.outputs), {n: t.numpy() for n, t in zip(result.inputs, inputs)})
    with torch.no_grad():
        want = reference(*inputs)
    want_list = list(want) if isinstance(want, (tuple, list)) else [want]
    if len(want_list) != len(got):
        raise InputError(f"reference: returned {len(want_list)} outputs, the ONNX file has {len(got)}")
    tol = TOLERANCE[result.precision] if tolerance is None else tolerance
    diffs = {}
    for name, a, b in zip(result.outputs, got, want_list):
        a_t = torch.from_numpy(a)
        if tuple(a_t.shape) != tuple(b.shape):
            raise CheckpointError(f"{result.path}: output {name} has shape {tuple(a_t.shape)}, torch gives "
                                  f"{tuple(b.shape)}")
        diffs[name] = float((a_t - b.float().cpu()).abs().max())
    result.max_abs_diff = diffs
    bad = {n: d for n, d in diffs.items() if not d <= tol}
    if bad:
        raise CheckpointError(f"{result.path}: onnxruntime differs from torch by "
                              f"{', '.join(f'{n} {d:.3g}' for n, d in bad.items())} (tolerance {tol:g})")
    return diffs
