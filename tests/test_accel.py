"""simswap_core.accel: autocast, batch buckets and padding, torch.compile with its eager fallback, CUDA-graph
bookkeeping (static buffers, one graph per bucket and autocast dtype; exercised on the CPU through an injected
capture that keeps a real graph's static-buffer semantics), the face batch from free memory (injected probes), and
FaceSwapper(compile=, cuda_graphs=) giving the same swap as the plain swapper. The real CUDA capture and memory
probes run only on a GPU (bench/gpu_check.sh)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.accel import (
    GeneratorAccelerator,
    _Graph,
    auto_face_batch_size,
    autocast,
    batch_buckets,
    bucket_for,
    face_batch_from_memory,
    face_footprint,
)
from simswap_core.errors import InputError
from simswap_core.networks.generator import GeneratorConfig, SimSwapGenerator
from simswap_core.swap import FaceSwapper, run_generator


@pytest.fixture(scope="module")
def tiny_g() -> SimSwapGenerator:
    torch.manual_seed(0)
    return SimSwapGenerator(GeneratorConfig(n_blocks=1), crop_size=16).eval()


def _inputs(n: int, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), F.normalize(torch.randn(n, 512, generator=g), dim=1)


class ReplayGraph:
    """A CPU stand-in for torch.cuda.CUDAGraph with its semantics: replay() reruns the captured call on the STATIC
    input buffers and writes the SAME output tensor (so stale inputs or a missing copy show up as wrong results)."""

    def __init__(self, fn, crops, latents, out):
        self.fn, self.crops, self.latents, self.out = fn, crops, latents, out
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        self.out.copy_(self.fn(self.crops, self.latents))


def fake_capture(log: list):
    def capture(fn, crops, latents):
        c, lat = crops.clone(), latents.clone()
        out = fn(c, lat)
        log.append((tuple(c.shape), torch.is_autocast_enabled("cpu")))
        return _Graph(ReplayGraph(fn, c, lat, out), c, lat, out)
    return capture


# ------------------------------------------------------------------------------------------ small parts

def test_buckets_and_autocast():
    assert batch_buckets(1) == (1,) and batch_buckets(12) == (1, 2, 4, 8, 12) and batch_buckets(16) == (1, 2, 4, 8, 16)
    assert [bucket_for(n, batch_buckets(12)) for n in (1, 3, 5, 9, 12, 13)] == [1, 4, 8, 12, 12, 13]
    with pytest.raises(InputError, match="positive"):
        batch_buckets(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(1, 3, 8, 8)
    with autocast(torch.device("cpu"), "fp32"):
        assert conv(x).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp16"):   # CPU fp16 autocast exists in this torch (slow, see bench)
        assert conv(x).dtype == torch.float16
    with pytest.raises(InputError, match="precision: expected one of fp32, bf16, fp16"):
        autocast(torch.device("cpu"), "fp8")


def test_face_batch_from_memory_with_injected_probes(tiny_g):
    gib, mib = 2**30, 2**20
    calls = []

    def footprint(gen, size, device, precision, channels_last=False):
        calls.append((size, precision, channels_last))
        return 100 * mib

    batch, why = face_batch_from_memory(tiny_g, 224, torch.device("cuda"), "bf16", channels_last=True,
                                        mem_get_info=lambda d: (8 * gib, 16 * gib), footprint=footprint)
    assert batch == 40 and calls == [(224, "bf16", True)]           # half of 8 GiB / 100 MiB
    assert "face batch 40" in why and "8.0 GiB" in why and "100 MiB" in why
    assert auto_face_batch_size(1 * gib, 100 * mib) == 5
    assert auto_face_batch_size(100 * gib, 100 * mib) == 64          # the cap
    assert auto_face_batch_size(10 * mib, 100 * mib) == 1            # never 0
    with pytest.raises(InputError, match="measures CUDA memory"):
        face_footprint(tiny_g, 32, torch.device("cpu"), "fp32")


# ------------------------------------------------------------------------------------------ accelerator

def test_cuda_graph_bookkeeping_with_a_replaying_capture(tiny_g):
    log: list = []
    acc = GeneratorAccelerator(tiny_g, "cpu", cuda_graphs=True, max_batch=4, capture=fake_capture(log))
    assert acc.padded and "CUDA graphs" in acc.describe()
    with torch.inference_mode():
        for seed, n in enumerate((3, 1, 4, 1, 6)):   # 6 faces: a batch of 4, then 2
            crops, lat = _inputs(n, seed)
            got = run_generator(acc, crops, lat, batch_size=4)
            assert torch.allclose(got, tiny_g(crops, lat), atol=1e-5), (n, seed)
        # one graph per bucket used (3 -> 4, 1, 4, 1, 4 + 2), each captured once, later calls replayed
        assert sorted(s[0] for s, _amp in log) == [1, 2, 4]
        replays = sum(e.graph.replays for e in acc.graphs.values())
        assert replays == 6 - 3
        # a different autocast dtype is a different graph (the captured kernels differ)
        crops, lat = _inputs(4, 9)
        got = run_generator(acc, crops, lat, batch_size=4, precision="bf16")
        assert len(log) == 4 and log[-1] == ((4, 3, 16, 16), True)
        assert (got - tiny_g(crops, lat)).abs().max() < 0.1


def test_cuda_graphs_are_not_used_on_the_cpu_and_it_is_said(tiny_g):
    acc = GeneratorAccelerator(tiny_g, "cpu", cuda_graphs=True, max_batch=4)
    assert not acc.padded and not acc.use_graphs
    assert "CUDA graphs not used: the generator runs on cpu" in acc.describe()
    crops, lat = _inputs(3)
    with torch.inference_mode():
        assert torch.equal(acc(crops, lat), tiny_g(crops, lat))


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_g):
    crops, lat = _inputs(3)
    want = tiny_g(crops, lat)

    def broken_compile(fn):
        def run(*a):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore details")
        return run

    acc = GeneratorAccelerator(tiny_g, "cpu", compile=True, max_batch=4, compile_fn=broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile of the generator failed .*no working C\\+\\+ compiler"):
        got = acc(crops, lat)
    assert torch.allclose(got, want, atol=1e-6) and acc.compiled is None
    assert "torch.compile failed (RuntimeError: InductorError: no working C++ compiler found)" in acc.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acc(crops, lat)                                  # warned once; eager from now on

    def refusing_compile(fn):
        raise RuntimeError("Dynamo is not supported on Python 3.99")

    with pytest.warns(RuntimeWarning, match="Dynamo is not supported"):
        acc = GeneratorAccelerator(tiny_g, "cpu", compile=True, compile_fn=refusing_compile)
    assert acc.compiled is None and torch.allclose(acc(crops, lat), want, atol=1e-6)


def test_an_error_of_the_generator_itself_is_not_hidden(tiny_g):
    def broken_compile(fn):
        def run(*a):
            raise RuntimeError("compiled path failed")
        return run

    acc = GeneratorAccelerator(tiny_g, "cpu", compile=True, compile_fn=broken_compile)
    with pytest.raises(InputError, match="generator target must be a"):
        acc(torch.rand(2, 4, 16, 16), torch.rand(2, 512))
    assert acc.compiled is not None                      # not dropped: the eager generator failed too


def test_torch_compile_traces_the_generator(tiny_g, monkeypatch):
    """Real torch.compile (dynamo) of the SimSwap generator, with the eager backend so the test stays fast (inductor
    on 2 CPU cores takes minutes; bench/bench_precision.py measures the inductor-compiled drift)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", **kw))
    torch._dynamo.reset()
    acc = GeneratorAccelerator(tiny_g, "cpu", compile=True, max_batch=4)
    with torch.inference_mode():
        for n in (3, 4):                     # both bucket 4: traced once
            crops, lat = _inputs(n, n)
            assert torch.allclose(acc(crops, lat), tiny_g(crops, lat), atol=1e-5)
    assert acc.compiled is not None and acc.describe() == "torch.compile"


# ------------------------------------------------------------------------------------------ FaceSwapper

def test_faceswapper_options_are_checked(fast_swapper):
    g, a, d = fast_swapper.generator, fast_swapper.arcface, fast_swapper.detector
    with pytest.raises(InputError, match="precision: expected one of fp32, bf16, fp16, got 'fp64'"):
        FaceSwapper(g, a, d, device="cpu", precision="fp64")
    with pytest.raises(InputError, match="compile: expected True or False"):
        FaceSwapper(g, a, d, device="cpu", compile="yes")
    with pytest.raises(InputError, match="cuda_graphs: expected True or False"):
        FaceSwapper(g, a, d, device="cpu", cuda_graphs=1.0)
    assert fast_swapper.auto_face_batch_size() == 1 and fast_swapper.acceleration() == "fp32"


@pytest.mark.slow
def test_faceswapper_with_graphs_and_compile_gives_the_plain_swap(fast_swapper, pl_identity, monkeypatch):
    small = to_tensor(astronaut_small(256))
    frames = torch.cat([small, small.flip(-1), small])
    g, a, d = fast_swapper.generator, fast_swapper.arcface, fast_swapper.detector
    graphs = FaceSwapper(g, a, d, device="cpu", cuda_graphs=True, precision="bf16")
    assert graphs.acceleration() == ("bf16 autocast, channels_last, CUDA graphs not used: the generator runs on cpu "
                                     "(they need a CUDA device)")
    assert graphs.accelerator is not None and not graphs.accelerator.padded   # the plain generator path
    plain = fast_swapper.swap(frames, pl_identity, face_batch_size=4)
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", **kw))
    torch._dynamo.reset()
    compiled = FaceSwapper(g, a, d, device="cpu", compile=True)
    out = compiled.swap(frames, pl_identity, face_batch_size=4)     # 3 faces padded to the bucket of 4
    assert compiled.acceleration() == "fp32, torch.compile"
    assert len(out.faces) == 3 and (out.images - plain.images).abs().max() < 1e-5


def test_the_accelerated_generator_loop_has_no_host_sync(tiny_g):
    """Padding to buckets, graph replays and the batch loop read nothing back to the host (issue 13 item 2)."""
    from sync_counter import SyncCounter

    log: list = []
    acc = GeneratorAccelerator(tiny_g, "cpu", cuda_graphs=True, max_batch=4, capture=fake_capture(log))
    crops, lat = _inputs(7)
    with torch.inference_mode():
        run_generator(acc, crops, lat, batch_size=4)              # captures buckets 4 (and 4 for the 3 left)
        with SyncCounter() as sc:
            run_generator(acc, crops, lat, batch_size=4, precision="fp32")
    assert sc.count == 0, sc.by_site()


@pytest.mark.slow
def test_cli_swap_says_how_the_generator_runs(fast_generator_path, pl_weights, pl_identity, tmp_path, capsys):
    from PIL import Image

    from simswap_core.cli.main import main
    from simswap_core.identity import save_identity

    ident = save_identity(pl_identity, tmp_path / "id.safetensors")
    Image.fromarray(astronaut_small(256)).save(tmp_path / "target.png")
    rc = main(["swap", "--source", str(ident), "--target", str(tmp_path / "target.png"), "--out",
               str(tmp_path / "out.png"), "--generator", str(fast_generator_path), "--arcface",
               str(pl_weights["arcface"]), "--device", "cpu", "--precision", "bf16", "--cuda-graphs"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert ("generator: bf16 autocast, channels_last, CUDA graphs not used: the generator runs on cpu (they need a "
            "CUDA device)") in err
    assert (tmp_path / "out.png").is_file()
