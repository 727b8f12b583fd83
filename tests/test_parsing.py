"""BiSeNet face parser: official face-parsing.PyTorch key names load strictly, with no download; the official
preprocessing (ImageNet norm, nearest to 512, main head, argmax); region selection.

The key list below is written from face-parsing.PyTorch's model.py / resnet.py layout (ContextPath with a
ResNet-18 trunk, two ARMs, heads 32/16, conv_avg; FFM; three BiSeNetOutput heads), not read from our module,
so a renamed or reshaped layer fails the strict load. Weights are seeded random values (79999_iter.pth is not
on PyPI and is never committed).
"""
from __future__ import annotations

import socket
import sys
import urllib.request

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from simswap_core.errors import CheckpointError, InputError
from simswap_core.masks.parsing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABEL_NAMES,
    OFFICIAL_LABELS,
    OFFICIAL_REGIONS,
    REGIONS,
    labels_to_mask,
    parse_faces,
    region_labels,
)
from simswap_core.models.loaders import load_parser


def _conv(k, cout, cin, ks):
    return [(k + ".weight", (cout, cin, ks, ks))]


def _bn(k, c):
    return [(k + s, (c,)) for s in (".weight", ".bias", ".running_mean", ".running_var")] + \
        [(k + ".num_batches_tracked", ())]


def _cbr(k, cout, cin, ks):
    return _conv(k + ".conv", cout, cin, ks) + _bn(k + ".bn", cout)


def official_bisenet_keys() -> list[tuple[str, tuple[int, ...]]]:
    keys = _conv("cp.resnet.conv1", 64, 3, 7) + _bn("cp.resnet.bn1", 64)
    cin = 64
    for li, cout in enumerate((64, 128, 256, 512), 1):
        for b in range(2):
            k = f"cp.resnet.layer{li}.{b}"
            c0 = cin if b == 0 else cout
            keys += _conv(k + ".conv1", cout, c0, 3) + _bn(k + ".bn1", cout)
            keys += _conv(k + ".conv2", cout, cout, 3) + _bn(k + ".bn2", cout)
            if b == 0 and li > 1:
                keys += _conv(k + ".downsample.0", cout, c0, 1) + _bn(k + ".downsample.1", cout)
        cin = cout
    for name, c in (("arm16", 256), ("arm32", 512)):
        keys += _cbr(f"cp.{name}.conv", 128, c, 3) + _conv(f"cp.{name}.conv_atten", 128, 128, 1) + \
            _bn(f"cp.{name}.bn_atten", 128)
    keys += _cbr("cp.conv_head32", 128, 128, 3) + _cbr("cp.conv_head16", 128, 128, 3) + _cbr("cp.conv_avg", 128, 512, 1)
    keys += _cbr("ffm.convblk", 256, 256, 1) + _conv("ffm.conv1", 64, 256, 1) + _conv("ffm.conv2", 256, 64, 1)
    keys += _cbr("conv_out.conv", 256, 256, 3) + _conv("conv_out.conv_out", 19, 256, 1)
    for h in ("conv_out16", "conv_out32"):
        keys += _cbr(f"{h}.conv", 64, 128, 3) + _conv(f"{h}.conv_out", 19, 64, 1)
    return keys


def seeded_bisenet_state(seed: int = 1234) -> dict[str, torch.Tensor]:
    """Seeded random weights under the official key names (He-scaled convs, mild BN statistics)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in official_bisenet_keys():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.int64)
        elif k.endswith("running_var"):
            sd[k] = 1.0 + 0.2 * torch.rand(shape, generator=g)
        elif k.endswith("running_mean") or k.endswith(".bias"):
            sd[k] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            sd[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def write_seeded_bisenet(path, seed: int = 1234):
    torch.save(seeded_bisenet_state(seed), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt (urllib, torch.hub, sockets, torchvision) raises."""
    def boom(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setitem(sys.modules, "torchvision", None)        # import torchvision -> ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.model_zoo", None)


def test_module_keys_are_the_official_ones():
    from simswap_core.networks.bisenet import BiSeNet

    own = [(k, tuple(v.shape)) for k, v in BiSeNet(19).state_dict().items()]
    assert own == official_bisenet_keys()


def test_seeded_official_state_dict_loads_strictly_without_download(tmp_path, no_network):
    sd = seeded_bisenet_state()
    p = write_seeded_bisenet(tmp_path / "79999_iter.pth")
    net = load_parser(p)
    assert not net.training and not any(q.requires_grad for q in net.parameters())
    got = net.state_dict()
    assert set(got) == set(sd)
    assert all(torch.equal(got[k].float(), sd[k].float()) for k in sd)
    # variants seen in the wild: DataParallel "module." prefix, no num_batches_tracked (old torch), safetensors
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "dp.pth")
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "p.safetensors"))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x)
        for name in ("dp.pth", "old.pth", "p.safetensors"):
            assert torch.equal(load_parser(tmp_path / name)(x), want), name


def test_bad_parser_files_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="79999_iter.pth"):
        load_parser(tmp_path / "79999_iter.pth")
    sd = seeded_bisenet_state()
    torch.save({k: v for k, v in sd.items() if k != "ffm.conv1.weight"}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="ffm.conv1.weight"):
        load_parser(tmp_path / "missing.pth")
    bad = dict(sd)
    bad["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)    # an 18-class head
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shape"):
        load_parser(tmp_path / "shape.pth")
    torch.save(nn.Conv2d(3, 8, 3).state_dict(), tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a 19-class"):
        load_parser(tmp_path / "foreign.pth")                          # another network's weights
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError):
        load_parser(tmp_path / "list.pth")
    raw = (tmp_path / "full.pth")
    write_seeded_bisenet(raw)
    (tmp_path / "trunc.pth").write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_parser(tmp_path / "trunc.pth")


def _ref_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """face-parsing.PyTorch BiSeNet.forward (main head), functionally from the state dict."""
    def conv(k, t, stride=1, pad=None):
        w = sd[k + ".weight"]
        return F.conv2d(t, w, None, stride, w.shape[-1] // 2 if pad is None else pad)

    def bn(k, t):
        return F.batch_norm(t, sd[k + ".running_mean"], sd[k + ".running_var"], sd[k + ".weight"],
                            sd[k + ".bias"], False, 0.0, 1e-5)

    def cbr(k, t):
        return F.relu(bn(k + ".bn", conv(k + ".conv", t)))

    def block(k, t, stride):
        r = F.relu(bn(k + ".bn1", conv(k + ".conv1", t, stride)))
        r = bn(k + ".bn2", conv(k + ".conv2", r))
        sc = bn(k + ".downsample.1", conv(k + ".downsample.0", t, stride)) if k + ".downsample.0.weight" in sd else t
        return F.relu(sc + r)

    def arm(k, t):
        feat = cbr(k + ".conv", t)
        att = torch.sigmoid(bn(k + ".bn_atten", conv(k + ".conv_atten", F.avg_pool2d(feat, feat.shape[2:]))))
        return feat * att

    h, w = x.shape[2:]
    t = F.max_pool2d(F.relu(bn("cp.resnet.bn1", conv("cp.resnet.conv1", x, 2, 3))), 3, 2, 1)
    feats = []
    for li in range(1, 5):
        t = block(f"cp.resnet.layer{li}.0", t, 1 if li == 1 else 2)
        t = block(f"cp.resnet.layer{li}.1", t, 1)
        feats.append(t)
    f8, f16, f32 = feats[1:]
    avg = cbr("cp.conv_avg", F.avg_pool2d(f32, f32.shape[2:]))
    s32 = arm("cp.arm32", f32) + F.interpolate(avg, f32.shape[2:], mode="nearest")
    up32 = cbr("cp.conv_head32", F.interpolate(s32, f16.shape[2:], mode="nearest"))
    s16 = arm("cp.arm16", f16) + up32
    up16 = cbr("cp.conv_head16", F.interpolate(s16, f8.shape[2:], mode="nearest"))
    feat = cbr("ffm.convblk", torch.cat([f8, up16], 1))
    att = torch.sigmoid(conv("ffm.conv2", F.relu(conv("ffm.conv1", F.avg_pool2d(feat, feat.shape[2:])))))
    fuse = feat * att + feat
    out = conv("conv_out.conv_out", cbr("conv_out.conv", fuse))
    return F.interpolate(out, (h, w), mode="bilinear", align_corners=True)


def test_forward_matches_the_functional_reference(tmp_path):
    net = load_parser(write_seeded_bisenet(tmp_path / "p.pth", seed=7))
    sd = seeded_bisenet_state(7)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x)
        ref = _ref_forward(sd, x)
        main, o16, o32 = net(x, aux=True)
    assert out.shape == (2, 19, 128, 128) and o16.shape == o32.shape == out.shape
    assert torch.equal(main, out)
    assert (out - ref).abs().max() <= 1e-4 * (1 + ref.abs().max())
    assert torch.equal(out.argmax(1), ref.argmax(1)) or (out.argmax(1) != ref.argmax(1)).float().mean() < 1e-4


class _Recorder(nn.Module):
    """A fake parser: records its input, returns (main, aux) logits whose argmax is a known label map."""

    def __init__(self, labels: torch.Tensor):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.labels = labels
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        done = sum(t.shape[0] for t in self.seen)
        self.seen.append(x.clone())
        lab = self.labels[done:done + x.shape[0]]
        main = F.one_hot(lab, 19).permute(0, 3, 1, 2).float() * 5
        return main, -main


def test_parse_faces_official_preprocessing():
    g = torch.Generator().manual_seed(3)
    crops = torch.rand(3, 3, 224, 224, generator=g)
    labels = torch.randint(0, 19, (3, 512, 512), generator=g)
    rec = _Recorder(labels)
    out = parse_faces(rec, crops, batch_size=2)
    assert out.shape == (3, 512, 512) and out.dtype == torch.int64
    assert torch.equal(out, labels)                          # argmax of the FIRST (main) output
    assert [s.shape[0] for s in rec.seen] == [2, 1]          # batched, not per face
    x = torch.cat(rec.seen).numpy()
    # numpy reference: ImageNet normalisation, then F.interpolate's default 'nearest' (src = floor(dst * in/out))
    c = crops.numpy()
    norm = (c - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) / np.array(IMAGENET_STD, np.float32)[:, None, None]
    idx = np.floor(np.arange(512) * (224 / 512)).astype(int)
    want = norm[:, :, idx][:, :, :, idx]
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-5)
    rec.seen.clear()
    assert parse_faces(rec, crops[:0]).shape == (0, 512, 512)
    with pytest.raises(InputError):
        parse_faces(rec, crops[:, :1])


def test_seeded_parser_on_a_real_crop(tmp_path, astronaut):
    """The seeded net runs at the official 512 on real aligned crops; deterministic and batch-independent."""
    from simswap_core.align import align_faces
    from simswap_core.faces import DetectedFaces

    pts = torch.tensor([[[200.1, 101.8], [247.2, 102.6], [220.3, 124.7], [198.9, 143.2], [239.8, 143.9]]])
    faces = DetectedFaces(torch.zeros(2, 4), torch.cat([pts, pts + 3]), torch.ones(2),
                          torch.zeros(2, dtype=torch.int64), [(512, 512)])
    crops = align_faces(astronaut, faces, 224).crops
    net = load_parser(write_seeded_bisenet(tmp_path / "p.pth"))
    both = parse_faces(net, crops)
    one = parse_faces(net, crops[1:])
    assert both.shape == (2, 512, 512) and 0 <= int(both.min()) and int(both.max()) < 19
    assert (both[1] != one[0]).float().mean() < 1e-3
    assert len(torch.unique(both)) > 1


def test_regions_select_the_right_labels():
    assert len(LABEL_NAMES) == 19
    want = {"skin": (1,), "brows": (2, 3), "eyes": (4, 5), "glasses": (6,), "nose": (10,), "lips": (12, 13),
            "mouth": (11,)}
    names = {"skin": ["skin"], "brows": ["l_brow", "r_brow"], "eyes": ["l_eye", "r_eye"], "glasses": ["eyeglasses"],
             "nose": ["nose"], "lips": ["upper_lip", "lower_lip"], "mouth": ["mouth"]}
    for name, labels in want.items():
        assert region_labels([name]) == labels
        assert [LABEL_NAMES[i] for i in labels] == names[name]
    assert set(region_labels(OFFICIAL_REGIONS)) == {1, 2, 3, 4, 5, 6, 10, 11, 12, 13} == set(OFFICIAL_LABELS)
    assert region_labels(["Nose", " lips "]) == (10, 12, 13)
    assert set(REGIONS) >= set(want)
    with pytest.raises(InputError, match="unknown"):
        region_labels(["beard"])
    lab = torch.arange(19).view(1, 1, 19).expand(2, 4, 19)
    m = labels_to_mask(lab, region_labels(["eyes", "mouth"]))
    assert m.shape == (2, 1, 4, 19) and m.dtype == torch.float32
    assert m[0, 0, 0].nonzero().flatten().tolist() == [4, 5, 11]
