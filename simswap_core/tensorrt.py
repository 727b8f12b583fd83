"""TensorRT for the generator: an engine built from the exported ONNX file, or torch-tensorrt from the module.

Both are optional and CUDA-only; without the package a ``DependencyError`` names the pip command. Neither is
imported by ``import simswap_core``.

* ``build_engine(onnx_path, engine_path, max_batch=32)``: TensorRT's ONNX parser, a **strongly typed** network
  (TensorRT 11 has only strong typing; on 10.x the STRONGLY_TYPED flag is set), so the engine's precision is the
  ONNX file's: export with ``precision="fp16"`` (``simswap export --precision fp16``) for an fp16 engine (fp16
  weights and compute, float32 inputs/outputs). One optimisation profile: batch 1..max_batch (opt
  ``opt_batch``), spatial size fixed. The serialized engine is written atomically. bf16 is not offered here:
  ONNX's Conv has no bfloat16 type; use ``compile_torch_tensorrt(precision="bf16")``.
* ``TensorRTGenerator(engine_path, device)``: runs an engine as ``(crops [B,3,S,S] float32 RGB [0,1], latents
  [B,512]) -> [B,3,S,S]`` on torch CUDA tensors (no host copies; the current torch stream), usable with
  ``swap.run_generator``.
* ``compile_torch_tensorrt(generator, crop_size, precision, max_batch)``: ``torch_tensorrt.compile(ir="dynamo")``
  of ``export.GeneratorGraph`` (weights cast to fp16 / bf16, float32 inputs/outputs, explicit typing) with a
  dynamic batch 1..max_batch.

TensorRT needs NVIDIA's packages (``pip install tensorrt`` or ``torch-tensorrt`` matching the installed torch) and a
CUDA GPU; this module's shape and profile logic is tested on the CPU, the engine build and run only on a GPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .errors import CheckpointError, DependencyError, InputError
from .io.atomic import atomic_write

__all__ = ["TensorRTGenerator", "build_engine", "compile_torch_tensorrt", "onnx_inputs", "profile_shapes"]

TRT_PIP = "pip install tensorrt (NVIDIA's wheels; needs a CUDA GPU and driver)"
TORCH_TRT_PIP = "pip install torch-tensorrt (the release matching your torch version; needs a CUDA GPU)"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (version 10 or later), else DependencyError with the pip command."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise DependencyError(f"TensorRT engines need the tensorrt package: {TRT_PIP}") from e
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise DependencyError(f"TensorRT {trt.__version__} is too old: the engine path uses the TensorRT 10+ API "
                              f"(named I/O tensors, strong typing); {TRT_PIP}")
    return trt


def import_torch_tensorrt() -> ModuleType:
    """The ``torch_tensorrt`` module, else DependencyError with the pip command."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise DependencyError(f"compile_torch_tensorrt needs torch-tensorrt: {TORCH_TRT_PIP}") from e
    return torch_tensorrt


def onnx_inputs(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{input name: shape} of an ONNX file's graph inputs (initializers excluded), -1 for a dynamic axis."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    out = {}
    for value in model.graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        out[value.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
    if not out:
        raise CheckpointError(f"{path}: the ONNX graph has no inputs")
    return out


def profile_shapes(inputs: dict[str, tuple[int, ...]], max_batch: int, opt_batch: int | None = None
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input: (min, opt, max) shape} of one optimisation profile: axis 0 (the batch, -1 = dynamic) from 1 to
    ``max_batch`` (opt: ``opt_batch``, default min(8, max_batch)); every other axis must be fixed."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise InputError(f"max_batch: expected a positive integer, got {max_batch!r}")
    opt = min(8, max_batch) if opt_batch is None else opt_batch
    if isinstance(opt, bool) or not isinstance(opt, int) or not 1 <= opt <= max_batch:
        raise InputError(f"opt_batch: expected an integer in 1..max_batch ({max_batch}), got {opt_batch!r}")
    out = {}
    for name, shape in inputs.items():
        if not shape or any(d < 1 for d in shape[1:]):
            raise InputError(f"{name}: shape {list(shape)}: only the batch axis (0) may be dynamic for an engine "
                             "profile; export with a fixed crop size")
        rest = tuple(shape[1:])
        if shape[0] > 0:       # a fixed batch: the profile is that batch only
            out[name] = ((shape[0], *rest),) * 3
        else:
            out[name] = ((1, *rest), (opt, *rest), (max_batch, *rest))
    return out


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, max_batch: int = 32,
                 opt_batch: int | None = None, workspace_gib: float = 4.0, overwrite: bool = False) -> Path:
    """A serialized TensorRT engine (``engine_path``, written atomically) of the ONNX file: strongly typed (the
    file's precision), one profile of batch 1..max_batch. CheckpointError naming the parser errors when TensorRT
    cannot read the file; DependencyError without tensorrt. Needs a CUDA GPU (TensorRT builds for it)."""
    trt = import_tensorrt()
    shapes = profile_shapes(onnx_inputs(onnx_path), max_batch, opt_batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CheckpointError(f"{onnx_path}: TensorRT could not parse the ONNX file: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckpointError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    data = bytes(serialized)
    return atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(data), overwrite=overwrite)


class TensorRTGenerator:
    """A generator engine (``build_engine`` of an exported generator) as ``(crops, latents) -> swapped``: crops
    [B,3,S,S] float RGB [0,1] (any memory format: made contiguous NCHW), latents [B,512] unit norm, both CUDA
    tensors on ``device``; returns a new [B,3,S,S] float32 tensor. Runs on torch's current CUDA stream."""

    def __init__(self, engine_path: str | os.PathLike, device: torch.device | str = "cuda"):
        trt = import_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise InputError(f"device: TensorRT engines run on a CUDA device, got {self.device}")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine: Any = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise CheckpointError(f"{engine_path}: not a TensorRT engine for this TensorRT version / GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        ranks = {n: len(self.engine.get_tensor_shape(n)) for n in ins}
        crops = [n for n in ins if ranks[n] == 4]
        latents = [n for n in ins if ranks[n] == 2]
        if len(crops) != 1 or len(latents) != 1 or len(outs) != 1:
            raise CheckpointError(f"{engine_path}: expected a generator engine (one [N,3,S,S] and one [N,512] "
                                  f"input, one output), got inputs {ins}, outputs {outs}")
        self.crop_name, self.latent_name, self.output_name = crops[0], latents[0], outs[0]

    def __call__(self, crops: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        crops = crops.to(self.device, torch.float32).contiguous()
        latents = latents.to(self.device, torch.float32).contiguous()
        self.context.set_input_shape(self.crop_name, tuple(crops.shape))
        self.context.set_input_shape(self.latent_name, tuple(latents.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32,
                          device=self.device)
        for name, t in ((self.crop_name, crops), (self.latent_name, latents), (self.output_name, out)):
            self.context.set_tensor_address(name, t.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT: the engine failed to run (see its log above)")
        return out


def compile_torch_tensorrt(generator: torch.nn.Module, crop_size: int, *, precision: str = "fp16",
                           max_batch: int = 32, opt_batch: int | None = None) -> torch.nn.Module:
    """torch-tensorrt (dynamo) compilation of the generator on its CUDA device: a module ``(crops [B,3,S,S] float32
    RGB [0,1], latents [B,512] float32) -> [B,3,S,S] float32`` running TensorRT in ``precision`` ("fp32", "fp16",
    "bf16": the weights are cast, explicit typing) for B in 1..max_batch."""
    from .accel import PRECISIONS, check_precision
    from .export import GeneratorGraph

    torch_tensorrt = import_torch_tensorrt()
    dtype = PRECISIONS[check_precision(precision)] or torch.float32
    p = next(generator.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    if device.type != "cuda":
        raise InputError(f"generator: torch-tensorrt compiles for a CUDA device; the generator is on {device}")
    shapes = profile_shapes({"crops": (-1, 3, crop_size, crop_size), "latents": (-1, 512)}, max_batch, opt_batch)
    import copy

    graph = GeneratorGraph(copy.deepcopy(generator).to(dtype).eval(), "unit", dtype).to(device)
    inputs = [torch_tensorrt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=torch.float32)
              for lo, opt, hi in shapes.values()]
    return torch_tensorrt.compile(graph, ir="dynamo", inputs=inputs, use_explicit_typing=True)
