"""Fixtures of the checkpoint tests (test_checkpoints, test_convert, test_malicious_pickles): the official pickled
ArcFace rebuilt with stand-in classes under the official class paths (``models.arcface_models.*`` for the 2023 file,
``models.*`` for the 2021 one; removed from ``sys.modules`` / ``sys.path`` before loading, so a loader that imported
them would fail), and small seeded generator files in the official formats (random weights, spec section 8.1)."""
from __future__ import annotations

import functools
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from simswap_core import convert_checkpoint, load_arcface, load_generator
from simswap_core.models.seeded import seeded_state_dict

# ------------------------------------------------------------------------------------------ stand-in classes
# A copy of the structure of SimSwap's models/arcface_models.py (foamliu InsightFace-v2): enough to hold the
# official r101(-SE) keys. Forward code is irrelevant (a pickle never stores it).
_STANDIN_CLASSES = textwrap.dedent('''
    import math
    import torch
    from torch import nn
    from torch.nn import Parameter

    def conv3x3(in_planes, out_planes, stride=1):
        return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    class SEBlock(nn.Module):
        def __init__(self, channel, reduction=16):
            super(SEBlock, self).__init__()
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.PReLU(),
                                    nn.Linear(channel // reduction, channel), nn.Sigmoid())

    class IRBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None, use_se=True):
            super(IRBlock, self).__init__()
            self.bn0 = nn.BatchNorm2d(inplanes)
            self.conv1 = conv3x3(inplanes, inplanes)
            self.bn1 = nn.BatchNorm2d(inplanes)
            self.prelu = nn.PReLU()
            self.conv2 = conv3x3(inplanes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample
            self.stride = stride
            self.use_se = use_se
            if self.use_se:
                self.se = SEBlock(planes)

    class ResNet(nn.Module):
        def __init__(self, block, layers, use_se=True):
            self.inplanes = 64
            self.use_se = use_se
            super(ResNet, self).__init__()
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.prelu = nn.PReLU()
            self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.bn2 = nn.BatchNorm2d(512)
            self.dropout = nn.Dropout()
            self.fc = nn.Linear(512 * 7 * 7, 512)
            self.bn3 = nn.BatchNorm1d(512)

        def _make_layer(self, block, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, downsample, use_se=self.use_se)]
            self.inplanes = planes
            for _ in range(1, blocks):
                layers.append(block(self.inplanes, planes, use_se=self.use_se))
            return nn.Sequential(*layers)

    class ArcMarginModel(nn.Module):
        def __init__(self, num_classes=10, emb_size=512, margin_m=0.5, margin_s=64.0, easy_margin=False):
            super(ArcMarginModel, self).__init__()
            self.weight = Parameter(torch.FloatTensor(num_classes, emb_size))
            nn.init.xavier_uniform_(self.weight)
            self.easy_margin = easy_margin
            self.m = margin_m
            self.s = margin_s
            self.cos_m = math.cos(self.m)
            self.sin_m = math.sin(self.m)
            self.th = math.cos(math.pi - self.m)
            self.mm = math.sin(math.pi - self.m) * self.m
''')


class _StandIn:
    """Temporarily importable ``models`` package; everything it added to sys.modules/sys.path is removed on exit."""

    def __init__(self, root: Path, generation: str) -> None:
        pkg = root / "models"
        pkg.mkdir(parents=True)
        if generation == "2023":  # models.arcface_models.ResNet / IRBlock / SEBlock
            (pkg / "__init__.py").write_text("")
            (pkg / "arcface_models.py").write_text(_STANDIN_CLASSES)
        else:  # 2021: the classes were importable as models.ResNet & co.
            (pkg / "__init__.py").write_text(_STANDIN_CLASSES)
        self.root, self.generation = str(root), generation

    def __enter__(self):
        assert "models" not in sys.modules, "a 'models' package is already imported; the test cannot prove anything"
        sys.path.insert(0, self.root)
        importlib.invalidate_caches()
        name = "models.arcface_models" if self.generation == "2023" else "models"
        return importlib.import_module(name)

    def __exit__(self, *exc):
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]
        sys.path.remove(self.root)
        sys.path_importer_cache.pop(self.root, None)
        importlib.invalidate_caches()
        return False


def _standin_resnet(mod, state, use_se=True):
    with torch.device("meta"):
        model = mod.ResNet(mod.IRBlock, [3, 4, 23, 3], use_se=use_se)
    # official keys, strictly; copies, so that training steps on the stand-in leave ``state`` alone
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return model


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def arc_state():
    return seeded_state_dict("arcface", seed=1234)


@pytest.fixture(scope="module")
def official_arcface_files(tmp_path_factory, arc_state):
    """The official pickled ArcFace in several encodings: name -> path."""
    root = tmp_path_factory.mktemp("official_arcface")
    files: dict[str, Path] = {}
    with _StandIn(root / "pkg2023", "2023") as mod:
        model = _standin_resnet(mod, arc_state)
        assert type(model).__module__ == "models.arcface_models"
        for name, kwargs in {
            "2023_zip_p2": dict(pickle_protocol=2),
            "2023_zip_p4": dict(pickle_protocol=4),  # torch's default is 2 (the line above); 4 as a variant
            "2023_legacy_p2": dict(pickle_protocol=2, _use_new_zipfile_serialization=False),
        }.items():
            files[name] = root / f"{name}_arcface_checkpoint.tar"
            torch.save(model, files[name], **kwargs)
        del model
    with _StandIn(root / "pkg2021", "2021") as mod:
        model = _standin_resnet(mod, arc_state)
        assert type(model).__qualname__ == "ResNet" and type(model).__module__ == "models"
        dp = torch.nn.DataParallel(model)
        # what a DataParallel built on a GPU machine carries (CPU-only construction leaves these out)
        dp.device_ids, dp.output_device, dp.src_device_obj, dp.dim = [0], 0, torch.device("cuda", 0), 0
        metric_fc = mod.ArcMarginModel(num_classes=10)
        optimizer = torch.optim.SGD([{"params": model.parameters()}, {"params": metric_fc.parameters()}],
                                    lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        # a few momentum buffers (a real file holds them for every parameter), keyed by the parameters themselves
        for p in (metric_fc.weight, model.fc.weight, model.bn3.bias):
            p.grad = torch.ones_like(p)
        with torch.no_grad():
            optimizer.step()
        for p in (metric_fc.weight, model.fc.weight, model.bn3.bias):
            p.grad = None
        model_state_after_step = {k: v.detach().clone() for k, v in model.state_dict().items()}
        ckpt = {"epoch": 41, "epochs_since_improvement": 0, "model": dp, "metric_fc": metric_fc,
                "optimizer": optimizer}
        for name, kwargs in {
            "2021_legacy_p2": dict(pickle_protocol=2, _use_new_zipfile_serialization=False),
            "2021_zip_default": {},
        }.items():
            files[name] = root / f"{name}_arcface_checkpoint.tar"
            torch.save(ckpt, files[name], **kwargs)
        del ckpt, dp, model, optimizer
    files["_2021_state"] = model_state_after_step  # type: ignore[assignment]
    assert "models" not in sys.modules
    return files


@pytest.fixture(scope="module")
def arcface_reference(official_arcface_files):
    """A 2023-format file loaded once (shared by the tests that only need some ArcFace module)."""
    return load_arcface(official_arcface_files["2023_zip_p2"])


def _arc_raw_error(model, golden):
    with torch.inference_mode():
        out = model(torch.from_numpy(golden["arc_input"]))
    ref = torch.from_numpy(golden["arc_output"])
    return (out - ref).abs().max().item() / ref.abs().max().item(), out


# -------------------------------------------------------------------------------------------- 3. bad files
@pytest.fixture(scope="module")
def g224_file(seeded_checkpoints):
    return seeded_checkpoints["g224"]


@functools.lru_cache(maxsize=1)
def _small_state_once():
    return {k: v for k, v in seeded_state_dict("g224").items()
            if not k.startswith("BottleNeck.") or k.startswith("BottleNeck.0.")}


def _small_state():
    """The seeded g224 weights with only the first of the 9 ID blocks: a valid (1-block) generator, 6x smaller.
    A fresh copy each call (tests modify it)."""
    return {k: v.clone() for k, v in _small_state_once().items()}


@pytest.fixture(scope="module")
def small_state():
    return _small_state()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, small_state):
    return _save(tmp_path_factory.mktemp("small") / "small_net_G.pth", small_state)


@pytest.fixture(scope="module")
def small_model(small_file):
    G = load_generator(small_file)
    assert G.config.n_blocks == 1
    return G


@pytest.fixture(scope="module")
def g224_legacy(tmp_path_factory, small_state):
    path = tmp_path_factory.mktemp("legacy") / "small_net_G.pth"
    torch.save(small_state, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def small_safetensors(tmp_path_factory, small_file):
    return convert_checkpoint(small_file, tmp_path_factory.mktemp("st") / "small_net_G.safetensors")


def _assert_named(exc: BaseException, path: Path, found: str) -> None:
    msg = str(exc)
    assert str(path) in msg, msg
    assert "expected" in msg, msg
    assert found.lower() in msg.lower(), f"{found!r} not in {msg!r}"


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path
