"""Model-folder clutter as a ReActor / insightface install leaves it, for the model-list tests.

Small ONNX files with the input/output SIGNATURES of insightface's models (inswapper_128, w600k_r50, genderage,
1k3d68, 2d106det) and of an SCRFD detector with key points (9 outputs); torch files under unofficial names (a
SimSwap ArcFace, a 224 generator), a GFPGAN-like checkpoint and a ReActor-like face model. The ONNX graphs are
tiny: only their signatures matter to the lists (the genderage one also runs: a seeded [N,3] head); the torch
files hold the seeded weights.
"""
from __future__ import annotations

from pathlib import Path

import torch


def _onnx(path: Path, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]) -> Path:
    """An ONNX model with these graph inputs/outputs (name, shape); every output is Identity of the first input
    (shapes are declared only: these models exist to be listed or left out, not run)."""
    from onnx import TensorProto, helper, save

    first = inputs[0][0]
    nodes = [helper.make_node("Identity", [first], [name]) for name, _ in outputs]
    vin = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    vout = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs]
    graph = helper.make_graph(nodes, path.stem, vin, vout)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def write_scrfd_like(path: Path, outputs: int = 9) -> Path:
    """An SCRFD-like detector: one [1,3,?,?] input, 9 outputs (scores, boxes, key points at 3 strides)."""
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps")[: outputs // 3] for s in (8, 16, 32)]
    names += [f"extra_{i}" for i in range(outputs - len(names))]
    return _onnx(path, [("input.1", [1, 3, "?", "?"])], [(n, [1, "?", 1]) for n in names])


def write_genderage_like(path: Path, seed: int = 5) -> Path:
    """A runnable genderage-like model: [N,3,96,96] -> channel means -> seeded 3x3 Gemm -> [N,3] (female/male
    scores, age / 100). Its weight is also listed among the graph inputs, as insightface's mxnet export does."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((3, 3)).astype(np.float32), "fc1_weight")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "fc1_bias")
    nodes = [helper.make_node("GlobalAveragePool", ["data"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc1_weight", "fc1_bias"], ["fc1"])]
    graph = helper.make_graph(nodes, "genderage", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                                ["N", 3, 96, 96]),
                                                   helper.make_tensor_value_info("fc1_weight", TensorProto.FLOAT,
                                                                                 [3, 3])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 3])], [w, b])
    path.parent.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def write_insightface_clutter(folder: Path) -> dict[str, Path]:
    """ReActor's models/insightface layout: inswapper_128.onnx and the buffalo_l recognition / attribute /
    landmark models (none of them a detector). Returns name -> path."""
    folder = Path(folder)
    pack = folder / "models" / "buffalo_l"
    return {
        "inswapper_128.onnx": _onnx(folder / "inswapper_128.onnx",
                                    [("target", [1, 3, 128, 128]), ("source", [1, 512])],
                                    [("output", [1, 3, 128, 128])]),
        "w600k_r50.onnx": _onnx(pack / "w600k_r50.onnx", [("input.1", ["None", 3, 112, 112])], [("683", [1, 512])]),
        "genderage.onnx": write_genderage_like(pack / "genderage.onnx"),
        "1k3d68.onnx": _onnx(pack / "1k3d68.onnx", [("data", [1, 3, 192, 192])], [("fc1", [1, 3309])]),
        "2d106det.onnx": _onnx(pack / "2d106det.onnx", [("data", [1, 3, 192, 192])], [("fc1", [1, 212])]),
    }


def write_torch_clutter(folder: Path) -> dict[str, Path]:
    """Torch files under unofficial names in models/simswap: a SimSwap ArcFace (``my_arcface.pth``), a 224
    generator (``people_swap_v2.pth``), a GFPGAN-like checkpoint (``GFPGANv1.4.pth``, keys under 'params_ema')
    and a ReActor-like face model (``reactor_face.safetensors``). Returns name -> path."""
    from safetensors.torch import save_file

    from simswap_core.models.seeded import seeded_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"my_arcface.pth": folder / "my_arcface.pth", "people_swap_v2.pth": folder / "people_swap_v2.pth",
           "GFPGANv1.4.pth": folder / "GFPGANv1.4.pth", "reactor_face.safetensors": folder / "reactor_face.safetensors"}
    torch.save(seeded_state_dict("arcface", seed=7), out["my_arcface.pth"])
    torch.save(seeded_state_dict("g224", seed=7), out["people_swap_v2.pth"])
    torch.save({"params_ema": {"conv_body_first.weight": torch.zeros(32, 3, 3, 3),
                               "stylegan_decoder.style_mlp.1.weight": torch.zeros(512, 512)}}, out["GFPGANv1.4.pth"])
    save_file({"bbox": torch.zeros(4), "kps": torch.zeros(5, 2), "embedding": torch.zeros(512),
               "gender": torch.zeros(1), "age": torch.zeros(1)}, str(out["reactor_face.safetensors"]))
    return out
