"""simswap_core.export / cli/export.py / tensorrt.py on the CPU: the generator and ArcFace exported to ONNX with the
names other SimSwap tools use (FaceFusion: target/source -> output; Rope/VisoMaster: input/onnx::Gemm_1 ->
output), a dynamic batch axis, run by onnxruntime against torch (random inputs at a batch size other than the traced
one, and a real aligned crop of the astronaut), fp16 weights; `simswap export`; the TensorRT module's CPU parts
(ONNX input shapes -> optimisation profile, DependencyError without tensorrt / torch-tensorrt).

Stated tolerance: fp32 files within 1e-4 of torch (outputs RGB [0,1], i.e. < 1/40 of an 8-bit level); fp16 files
within 5e-2 of the fp32 torch generator (seeded weights; see bench/bench_precision.py for real crops)."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort  # the test extra installs it: missing, these tests fail rather than skip
import pytest
import torch
import torch.nn.functional as F

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.cli.main import main
from simswap_core.errors import CheckpointError, DependencyError, InputError
from simswap_core.export import check_onnx, export_arcface, export_generator
from simswap_core.identity import arcface_input
from simswap_core.models.loaders import load_generator
from simswap_core.networks.arcface import ArcFaceConfig, IResNet
from simswap_core.networks.generator import IMAGENET_MEAN, IMAGENET_STD, GeneratorConfig, SimSwapGenerator
from simswap_core.tensorrt import (
    TensorRTGenerator,
    build_engine,
    compile_torch_tensorrt,
    onnx_inputs,
    profile_shapes,
)


def _io(path) -> tuple[dict, dict]:
    m = onnx.load(str(path))

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return {v.name: shape(v) for v in m.graph.input}, {v.name: shape(v) for v in m.graph.output}


@pytest.fixture(scope="module")
def fast_g(fast_generator_path):
    return load_generator(fast_generator_path)


@pytest.mark.slow
def test_generator_facefusion_names_and_a_real_crop(fast_g, fast_swapper, pl_identity, tmp_path):
    res = export_generator(fast_g, tmp_path / "g.onnx")
    ins, outs = _io(res.path)
    assert ins == {"target": ["batch", 3, 64, 64], "source": ["batch", 512]}
    assert outs == {"output": ["batch", 3, 64, 64]}
    assert onnx.load(str(res.path)).opset_import[0].version == 17 and res.precision == "fp32"
    diffs = check_onnx(res)                       # batch 3 (traced with 2): the dynamic axis works
    assert diffs["output"] < 1e-4
    # a real aligned crop of the astronaut and the astronaut's identity latent, as the pipeline feeds G
    frame = to_tensor(astronaut_small(256))
    aligned = fast_swapper.align(frame, fast_swapper.detect(frame))
    crop, latent = aligned.crops, pl_identity.latent.reshape(1, 512)
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"target": crop.numpy(), "source": latent.numpy()})[0]
    with torch.no_grad():
        want = fast_g(crop, latent)
    assert np.abs(got - want.numpy()).max() < 1e-4
    with pytest.raises(InputError, match="already exists"):
        export_generator(fast_g, res.path)


def test_fp16_generator_and_arcface(tmp_path):
    torch.manual_seed(0)
    tiny = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16).eval()
    res = export_generator(tiny, tmp_path / "g16.onnx", precision="fp16")
    model = onnx.load(str(res.path))
    assert {i.data_type for i in model.graph.initializer if len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT   # float32 I/O
    assert check_onnx(res)["output"] < 5e-2
    # ArcFace: a small IResNet-SE (the same block types as r101-SE), input RGB [0,1] at 112
    arc = IResNet(ArcFaceConfig(layers=(1, 1, 1, 1))).eval()
    res = export_arcface(arc, tmp_path / "arc.onnx")
    ins, outs = _io(res.path)
    assert ins == {"input": ["batch", 3, 112, 112]} and outs == {"output": ["batch", 512], "latent": ["batch", 512]}
    diffs = check_onnx(res)
    assert diffs["output"] < 1e-3 and diffs["latent"] < 1e-4
    x = torch.rand(1, 3, 112, 112)
    got = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    with torch.no_grad():
        emb = arc(arcface_input(x))               # the pipeline's own preprocessing (ImageNet mean/std)
    assert np.abs(got[0] - emb.numpy()).max() < 1e-3
    assert np.abs(got[1] - F.normalize(emb, dim=1).numpy()).max() < 1e-5


def test_export_errors(tmp_path):
    g = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16)
    with pytest.raises(InputError, match="opset: expected an ONNX opset 11..21"):
        export_generator(g, tmp_path / "a.onnx", opset=9)
    with pytest.raises(InputError, match="precision: expected fp32 or fp16.*bf16"):
        export_generator(g, tmp_path / "a.onnx", precision="bf16")
    with pytest.raises(InputError, match="names: expected one of facefusion, rope"):
        export_generator(g, tmp_path / "a.onnx", names="inswapper")
    with pytest.raises(InputError, match="crop_size: expected a multiple of 8"):
        export_generator(g, tmp_path / "a.onnx", crop_size=20)
    assert not list(tmp_path.iterdir())           # nothing written, no temporary left


def test_check_fails_above_the_tolerance(tmp_path):
    g = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16).eval()
    res = export_generator(g, tmp_path / "g.onnx")
    other = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16).eval()   # different random weights
    with pytest.raises(CheckpointError, match="onnxruntime differs from torch by output"):
        check_onnx(res, other)


@pytest.mark.slow
def test_cli_export_rope_names_and_imagenet_input(fast_g, fast_generator_path, tmp_path, capsys):
    out = tmp_path / "simswap_64.onnx"
    rc = main(["export", "--what", "generator", "--generator", str(fast_generator_path), "--out", str(out),
               "--names", "rope", "--input-norm", "imagenet", "--opset", "13", "--check"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "wrote " in err and "input [-1, 3, 64, 64]" in err and "max |difference| output" in err
    ins, outs = _io(out)
    assert list(ins) == ["input", "onnx::Gemm_1"] and list(outs) == ["output"]
    assert onnx.load(str(out)).opset_import[0].version == 13
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    lat = F.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(4)), dim=1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": ((x - mean) / std).numpy(), "onnx::Gemm_1": lat.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - fast_g(x, lat).numpy()).max() < 1e-4   # the same RGB [0,1] output as from unit input
    rc = main(["export", "--what", "generator", "--generator", str(fast_generator_path), "--out", str(out)])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    rc = main(["export", "--what", "arcface", "--out", str(tmp_path / "a.onnx"), "--engine", str(tmp_path / "a.plan")])
    assert rc == 2 and "--engine: TensorRT engines are built for the generator" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ TensorRT, CPU parts

def test_tensorrt_profile_from_an_exported_file(tmp_path):
    g = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16).eval()
    res = export_generator(g, tmp_path / "g.onnx")
    ins = onnx_inputs(res.path)
    assert ins == {"target": (-1, 3, 16, 16), "source": (-1, 512)}
    prof = profile_shapes(ins, max_batch=32)
    assert prof["target"] == ((1, 3, 16, 16), (8, 3, 16, 16), (32, 3, 16, 16))
    assert prof["source"] == ((1, 512), (8, 512), (32, 512))
    assert profile_shapes({"x": (4, 3, 8, 8)}, 16)["x"] == ((4, 3, 8, 8),) * 3
    with pytest.raises(InputError, match="only the batch axis"):
        profile_shapes({"x": (-1, 3, -1, -1)}, 8)
    with pytest.raises(InputError, match="opt_batch"):
        profile_shapes(ins, 4, opt_batch=8)
    with pytest.raises(InputError, match="max_batch"):
        profile_shapes(ins, 0)


def test_tensorrt_missing_is_a_clear_dependency_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)         # as if not installed (import raises ImportError)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
    with pytest.raises(DependencyError, match="pip install tensorrt"):
        build_engine(tmp_path / "g.onnx", tmp_path / "g.plan")
    with pytest.raises(DependencyError, match="pip install tensorrt"):
        TensorRTGenerator(tmp_path / "g.plan")
    g = SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16)
    with pytest.raises(DependencyError, match="pip install torch-tensorrt"):
        compile_torch_tensorrt(g, 16)
    assert not (tmp_path / "g.plan").exists()
