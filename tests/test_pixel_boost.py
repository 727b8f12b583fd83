"""Pixel boost (simswap_core.pixel_boost): sub-pixel phase split/stitch, and the stitched result has no seams."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simswap_core.errors import InputError
from simswap_core.pixel_boost import check_pixel_boost, split_phases, stitch_phases


def test_split_then_stitch_is_exact_and_phase_ordered():
    x = torch.rand(3, 3, 8, 8)
    for k in (1, 2, 4):
        sub = split_phases(x, k)
        assert sub.shape == (3 * k * k, 3, 8 // k, 8 // k)
        assert torch.equal(stitch_phases(sub, k), x)
    sub = split_phases(x, 2)
    assert torch.equal(sub[1 * 4 + 1 * 2 + 0], x[1, :, 1::2, 0::2])   # face 1, phase (i=1, j=0)


def test_bad_boost_and_sizes_are_refused():
    for bad in (0, 5, 2.0, True, "2"):
        with pytest.raises(InputError, match="pixel_boost"):
            check_pixel_boost(bad)
    with pytest.raises(InputError, match="multiple of 2"):
        split_phases(torch.rand(1, 3, 7, 8), 2)
    with pytest.raises(InputError, match="multiple of 4"):
        stitch_phases(torch.rand(3, 3, 4, 4), 2)


def _smooth_generator(x: torch.Tensor) -> torch.Tensor:
    """A stand-in generator that changes every pixel smoothly (blur + colour shift), like a real G's output."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256.0
    w = k.expand(3, 1, 5, 5).contiguous()
    y = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), w, groups=3)
    return (0.8 * y + 0.1).clamp(0, 1)


def _column_jump(img: torch.Tensor, period: int) -> float:
    """Mean |difference| of horizontally adjacent columns at multiples of ``period`` divided by that elsewhere."""
    d = (img[..., 1:] - img[..., :-1]).abs().mean(dim=(0, 1, 2))      # [W-1], d[c] between columns c and c+1
    at = torch.zeros_like(d, dtype=torch.bool)
    at[torch.arange(period - 1, d.shape[0], period)] = True
    return float(d[at].mean() / d[~at].mean())


def _seam_excess(out: torch.Tensor, src: torch.Tensor, period: int) -> float:
    """How much more the output jumps across the lines every ``period`` pixels (both axes) than the source photo
    itself does there: about 1 or below when seamless, well above 1 where tiles were stitched side by side."""
    return max(_column_jump(out, period) / _column_jump(src, period),
               _column_jump(out.transpose(-1, -2), period) / _column_jump(src.transpose(-1, -2), period))


@pytest.mark.parametrize("k", [2, 4])
def test_stitched_result_has_no_seams_where_tiles_would(k):
    from pipeline_fixtures import astronaut_uint8, to_tensor

    face = to_tensor(astronaut_uint8())[:, :, 0:448, 40:488]           # [1,3,448,448] a real photo
    s = 448 // k                                                       # the generator's size
    boosted = stitch_phases(_smooth_generator(split_phases(face, k)), k)
    tiles = face.unfold(2, s, s).unfold(3, s, s)                       # [1,3,k,k,S,S] the naive tiling
    tiled_in = tiles.permute(0, 2, 3, 1, 4, 5).reshape(k * k, 3, s, s)
    tiled = _smooth_generator(tiled_in).reshape(1, k, k, 3, s, s).permute(0, 3, 1, 4, 2, 5).reshape(1, 3, 448, 448)
    assert _seam_excess(tiled, face, s) > 1.8                          # the check sees tile seams ...
    assert _seam_excess(boosted, face, s) < 1.3                        # ... and there are none with pixel boost
    assert _seam_excess(boosted, face, k) < 1.1                        # nor a k-periodic pattern at phase borders
    # every output pixel is the stand-in's output of its own phase
    assert torch.allclose(split_phases(boosted, k)[k * k - 1], _smooth_generator(face[:, :, k - 1::k, k - 1::k])[0])


def test_swap_with_pixel_boost_swaps_at_twice_the_size(fast_swapper, t1):
    """FaceSwapper.swap(pixel_boost=2): crops at 2S, each swapped as 4 phases, pasted only inside the faces."""
    identity = fast_swapper.extract_identity(t1, select="largest")
    plain = fast_swapper.swap(t1, identity, select="largest")
    boosted = fast_swapper.swap(t1, identity, select="largest", pixel_boost=2)
    s = fast_swapper.crop_size
    assert boosted.swapped.shape == (1, 3, 2 * s, 2 * s) and boosted.aligned.crop_size == 2 * s
    assert boosted.aligned.mode == plain.aligned.mode
    # the same face region: the boosted alignment is the plain one scaled by 2
    assert torch.allclose(boosted.aligned.matrices[0, :, :2], 2 * plain.aligned.matrices[0, :, :2], atol=1e-4)
    # each phase is the generator's own output for that phase of the crop
    sub = split_phases(boosted.aligned.crops, 2)
    with torch.inference_mode():
        phase = fast_swapper.generator(sub[3:4], identity.latent.reshape(1, -1)).float()
    assert torch.allclose(split_phases(boosted.swapped, 2)[3:4], phase, atol=1e-5)
    outside = boosted.mask == 0
    assert torch.equal(boosted.images[outside.expand_as(t1)], t1[outside.expand_as(t1)])
    assert (boosted.images != t1).any()


def test_swap_refuses_pixel_boost_in_official_mode(fast_swapper, t1):
    identity = fast_swapper.extract_identity(t1, select="largest")
    with pytest.raises(InputError, match="pixel_boost"):
        fast_swapper.swap(t1, identity, select="largest", pixel_boost=2, paste_mode="official")
    with pytest.raises(InputError, match="pixel_boost"):
        fast_swapper.swap(t1, identity, select="largest", pixel_boost=5)
