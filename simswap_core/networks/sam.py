"""Segment Anything (SAM v1) network with the official state-dict names, written for this pack (no torchvision).

The files users keep in ``models/sams`` (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth``) are state dicts of three parts, and this module builds the same parameter tree:

* ``image_encoder.*``: a ViT on a ``img_size`` square (1024) cut in ``patch_size`` (16) patches, absolute
  position embedding ``pos_embed [1,64,64,D]``, ``depth`` blocks of windowed (14x14) attention with a few
  global-attention blocks, each with decomposed relative positions (``rel_pos_h/_w [2*size-1, D/heads]``), then a
  ``neck`` (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d) to ``out_chans`` (256) channels: ``[N,256,64,64]``.
  vit_b: D 768, depth 12, 12 heads, global blocks 2,5,8,11; vit_l: 1024, 24, 16, (5,11,17,23);
  vit_h: 1280, 32, 16, (7,15,23,31).
* ``prompt_encoder.*``: random-Fourier position encoding of points and box corners, learnt point-type embeddings,
  and the dense (mask) input path.
* ``mask_decoder.*``: a two-way transformer between the prompt tokens (an IoU token and 4 mask tokens first) and
  the image embedding, then a 4x transposed-conv upscaling and per-token hypernetwork MLPs: low-resolution mask
  logits ``[F,K,256,256]`` on the padded input square, plus predicted IoUs ``[F,K]``.

Everything is a function of :class:`SamConfig`, inferred from the weights (:meth:`SamConfig.from_state_dict`), so
a small configuration (seeded test weights) uses the same code as the real ones. The number of heads of the
image encoder is inferred from the relative-position tables (their width is D/heads); the decoder's 8 heads do not
show in any shape, so they are the published value.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SAM_PRESETS", "SamConfig", "SamModel", "PIXEL_MEAN", "PIXEL_STD", "check_sam_size", "sam_state"]

#: the official normalisation, on 0..255 RGB
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """Shapes of a SAM network. ``global_attn``: indexes of the image-encoder blocks with global attention (the
    others use ``window_size`` windows)."""

    img_size: int = 1024
    patch_size: int = 16
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    encoder_mlp: int = 3072
    global_attn: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp: int = 2048
    num_mask_tokens: int = 4
    iou_head_depth: int = 3
    iou_head_hidden: int = 256

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"SAM img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder_dim % self.encoder_heads:
            raise ValueError(f"SAM encoder_dim {self.encoder_dim} is not a multiple of {self.encoder_heads} heads")
        if (self.prompt_dim // 2) % self.decoder_heads or self.prompt_dim % 8:
            raise ValueError(f"SAM prompt_dim {self.prompt_dim} does not fit {self.decoder_heads} decoder heads")
        if any(not 0 <= i < self.encoder_depth for i in self.global_attn):
            raise ValueError(f"SAM global attention blocks {self.global_attn} outside 0..{self.encoder_depth - 1}")

    @property
    def grid(self) -> int:
        """Side of the image embedding (img_size / patch_size; 64)."""
        return self.img_size // self.patch_size

    @property
    def low_res(self) -> int:
        """Side of the decoder's mask logits (4 x grid; 256)."""
        return 4 * self.grid

    @property
    def arch(self) -> str:
        """"vit_b" | "vit_l" | "vit_h" for the published layouts, else "sam_custom"."""
        for name, preset in SAM_PRESETS.items():
            if preset == self:
                return name
        return "sam_custom"

    @classmethod
    def preset(cls, name: str) -> SamConfig:
        key = str(name).strip().lower().replace("-", "_")
        if key not in SAM_PRESETS:
            raise ValueError(f"SAM preset {name!r} is not known; expected one of {sorted(SAM_PRESETS)}")
        return SAM_PRESETS[key]

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> SamConfig:
        """The configuration the keys and shapes of a state dict imply (meta tensors are fine). KeyError /
        ValueError when they are incomplete or inconsistent."""
        proj = state["image_encoder.patch_embed.proj.weight"]          # [D,3,p,p]
        dim, patch = int(proj.shape[0]), int(proj.shape[-1])
        grid = int(state["image_encoder.pos_embed"].shape[1])
        blocks = sorted({int(m.group(1)) for k in state
                         if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
        if not blocks or blocks != list(range(len(blocks))):
            raise ValueError(f"image_encoder.blocks are not numbered 0..n-1 ({blocks[:5]}...)")
        rel = [int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in blocks]
        head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        if head_dim <= 0 or dim % head_dim:
            raise ValueError(f"relative-position width {head_dim} does not divide the encoder width {dim}")
        global_attn = tuple(i for i, r in zip(blocks, rel) if r == 2 * grid - 1)
        windows = {(r + 1) // 2 for r in rel if r != 2 * grid - 1}
        if len(windows) > 1:
            raise ValueError(f"windowed blocks have different window sizes {sorted(windows)}")
        layers = sorted({int(m.group(1)) for k in state
                         if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))})
        iou_layers = sorted({int(m.group(1)) for k in state
                             if (m := re.match(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.", k))})
        return cls(
            img_size=grid * patch, patch_size=patch, encoder_dim=dim, encoder_depth=len(blocks),
            encoder_heads=dim // head_dim, encoder_mlp=int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]),
            global_attn=global_attn, window_size=windows.pop() if windows else 0,
            prompt_dim=int(state["image_encoder.neck.0.weight"].shape[0]),
            mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
            decoder_depth=len(layers),
            decoder_mlp=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            num_mask_tokens=int(state["mask_decoder.mask_tokens.weight"].shape[0]),
            iou_head_depth=len(iou_layers),
            iou_head_hidden=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        )


SAM_PRESETS: dict[str, SamConfig] = {
    "vit_b": SamConfig(encoder_dim=768, encoder_depth=12, encoder_heads=12, encoder_mlp=3072,
                       global_attn=(2, 5, 8, 11)),
    "vit_l": SamConfig(encoder_dim=1024, encoder_depth=24, encoder_heads=16, encoder_mlp=4096,
                       global_attn=(5, 11, 17, 23)),
    "vit_h": SamConfig(encoder_dim=1280, encoder_depth=32, encoder_heads=16, encoder_mlp=5120,
                       global_attn=(7, 15, 23, 31)),
}


_EXTRA_KEYS = ("pixel_mean", "pixel_std")   # constants some re-saved copies carry; never weights
_MAX_DEPTH, _MAX_DIM, _MAX_IMG = 64, 4096, 4096


def sam_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict without the normalisation constants that some re-saved copies carry (``pixel_mean``,
    ``pixel_std``: the official values are used)."""
    return {k: v for k, v in state.items() if k not in _EXTRA_KEYS}


def check_sam_size(config: SamConfig, source: str = "SAM weights") -> None:
    """ValueError unless the configuration is of a plausible size (a hostile file cannot ask for a huge model)."""
    if config.encoder_depth > _MAX_DEPTH or config.decoder_depth > _MAX_DEPTH or config.iou_head_depth > _MAX_DEPTH:
        raise ValueError(f"{source}: {config.encoder_depth} encoder / {config.decoder_depth} decoder blocks, "
                         f"expected at most {_MAX_DEPTH} (vit_h has 32 and 2)")
    if max(config.encoder_dim, config.prompt_dim, config.encoder_mlp // 4, config.decoder_mlp // 8) > _MAX_DIM:
        raise ValueError(f"{source}: widths {config.encoder_dim}/{config.prompt_dim} exceed {_MAX_DIM}")
    if config.img_size > _MAX_IMG or config.num_mask_tokens > 64 or config.window_size > config.grid:
        raise ValueError(f"{source}: input size {config.img_size} / {config.num_mask_tokens} mask tokens / window "
                         f"{config.window_size}: expected at most {_MAX_IMG} / 64 / {config.grid}")


# ------------------------------------------------------------------------------------------------ shared parts
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of [N,C,H,W] (eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """lin1 -> activation -> lin2."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


# ------------------------------------------------------------------------------------------------ image encoder
def _rel_table(size: int, table: Tensor) -> Tensor:
    """[size,size,C] relative-position embeddings of query i and key j (same size), from a [2*size-1,C] table
    (resampled linearly when its length differs)."""
    n = 2 * size - 1
    if table.shape[0] != n:
        table = F.interpolate(table.t()[None], size=n, mode="linear")[0].t()
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


class EncoderAttention(nn.Module):
    """Multi-head self-attention on [B,H,W,D] with decomposed relative positions (query-dependent biases along the
    rows and the columns)."""

    def __init__(self, dim: int, heads: int, size: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, d = x.shape
        nh = self.heads
        qkv = self.qkv(x).reshape(b, h * w, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                          # [b,nh,hw,c]
        rq = q.reshape(b, nh, h, w, d // nh)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, _rel_table(h, self.rel_pos_h))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, _rel_table(w, self.rel_pos_w))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.permute(0, 2, 1, 3).reshape(b, h, w, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; attention within windows of ``window`` tokens (0 = global)."""

    def __init__(self, dim: int, heads: int, mlp: int, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, heads, window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            b, h, w, d = x.shape
            ws = self.window
            ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
            hp, wp = h + ph, w + pw
            x = x.view(b, hp // ws, ws, wp // ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, d)
            x = self.attn(x)
            x = x.view(b, hp // ws, wp // ws, ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, d)
            x = x[:, :h, :w].contiguous()
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)                         # [B,H,W,D]


class ImageEncoder(nn.Module):
    """Normalised, padded [N,3,img,img] -> image embedding [N,prompt_dim,grid,grid]."""

    def __init__(self, c: SamConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(c.patch_size, c.encoder_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.grid, c.grid, c.encoder_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(c.encoder_dim, c.encoder_heads, c.encoder_mlp,
                         0 if i in c.global_attn else c.window_size, c.grid) for i in range(c.encoder_depth))
        self.neck = nn.Sequential(
            nn.Conv2d(c.encoder_dim, c.prompt_dim, 1, bias=False), LayerNorm2d(c.prompt_dim),
            nn.Conv2d(c.prompt_dim, c.prompt_dim, 3, padding=1, bias=False), LayerNorm2d(c.prompt_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------------ prompt encoder
class RandomFourierPE(nn.Module):
    """Position encoding of normalised coordinates by a fixed random Gaussian matrix (a buffer of the file)."""

    positional_encoding_gaussian_matrix: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.zeros(2, features))

    def encode(self, coords: Tensor) -> Tensor:
        """coords [...,2] in [0,1] (x, y) -> [..., 2*features] (sin, cos)."""
        z = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix.to(coords.dtype)
        z = 2 * math.pi * z
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

    def grid(self, size: int) -> Tensor:
        """[C,size,size] encoding of the embedding grid's cell centres."""
        dev = self.positional_encoding_gaussian_matrix.device
        c = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) / size
        xy = torch.stack([c[None, :].expand(size, size), c[:, None].expand(size, size)], dim=-1)
        return self.encode(xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Sparse tokens of points (label 1 positive, 0 negative, -1 padding) and boxes; dense 'no mask' embedding."""

    def __init__(self, c: SamConfig) -> None:
        super().__init__()
        d, self.img_size, self.grid_size = c.prompt_dim, c.img_size, c.grid
        self.pe_layer = RandomFourierPE(d // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, d) for _ in range(4))   # positive, negative, corners
        self.not_a_point_embed = nn.Embedding(1, d)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c.mask_in_chans // 4, 2, stride=2), LayerNorm2d(c.mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(c.mask_in_chans // 4, c.mask_in_chans, 2, stride=2), LayerNorm2d(c.mask_in_chans), nn.GELU(),
            nn.Conv2d(c.mask_in_chans, d, 1))
        self.no_mask_embed = nn.Embedding(1, d)

    def _point(self, i: int) -> Tensor:
        """[1,d] learnt embedding of point type i (0 negative, 1 positive, 2 box top-left, 3 box bottom-right)."""
        emb = self.point_embeddings[i]
        assert isinstance(emb, nn.Embedding)
        return emb.weight

    def dense_pe(self) -> Tensor:
        return self.pe_layer.grid(self.grid_size)[None]

    def forward(self, points: Tensor | None, labels: Tensor | None, boxes: Tensor | None, n: int) -> tuple[Tensor,
                                                                                                          Tensor]:
        """points [n,P,2] and boxes [n,4] in input pixels (x, y); -> sparse [n,T,d], dense [n,d,grid,grid]."""
        d = self.no_mask_embed.weight.shape[1]
        w = self.no_mask_embed.weight
        tokens = [w.new_zeros(n, 0, d)]
        if points is not None and labels is not None:
            pts = points.to(w.dtype) + 0.5
            if boxes is None:                                   # a padding point when there is no box
                pts = torch.cat([pts, pts.new_zeros(n, 1, 2)], 1)
                labels = torch.cat([labels, labels.new_full((n, 1), -1)], 1)
            emb = self.pe_layer.encode(pts / self.img_size)
            lab = labels[..., None]
            emb = torch.where(lab == -1, torch.zeros_like(emb), emb)
            emb = emb + torch.where(lab == -1, self.not_a_point_embed.weight, torch.zeros_like(emb))
            emb = emb + torch.where(lab == 0, self._point(0), torch.zeros_like(emb))
            emb = emb + torch.where(lab == 1, self._point(1), torch.zeros_like(emb))
            tokens.append(emb)
        if boxes is not None:
            corners = self.pe_layer.encode((boxes.to(w.dtype) + 0.5).reshape(n, 2, 2) / self.img_size)
            corners = corners + torch.cat([self._point(2), self._point(3)])[None]
            tokens.append(corners)
        dense = w.reshape(1, d, 1, 1).expand(n, d, self.grid_size, self.grid_size)
        return torch.cat(tokens, 1), dense


# ------------------------------------------------------------------------------------------------ mask decoder
class DecoderAttention(nn.Module):
    """Attention with q/k/v projected to dim/downsample channels, split in heads, projected back."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        def heads(x: Tensor) -> Tensor:
            b, n, c = x.shape
            return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(q)), heads(self.k_proj(k)), heads(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves, tokens -> image, MLP on tokens, image -> tokens."""

    def __init__(self, dim: int, heads: int, mlp: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = DecoderAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, heads, 2)

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, c: SamConfig) -> None:
        super().__init__()
        d = c.prompt_dim
        self.layers = nn.ModuleList(TwoWayBlock(d, c.decoder_heads, c.decoder_mlp, i == 0)
                                    for i in range(c.decoder_depth))
        self.final_attn_token_to_image = DecoderAttention(d, c.decoder_heads, 2)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MLP(nn.Module):
    """``layers.0..n-1`` Linear, ReLU between them."""

    def __init__(self, dim: int, hidden: int, out: int, depth: int) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * (depth - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [out]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, c: SamConfig) -> None:
        super().__init__()
        d = c.prompt_dim
        self.transformer = TwoWayTransformer(c)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(c.num_mask_tokens, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(c.num_mask_tokens))
        self.iou_prediction_head = MLP(d, c.iou_head_hidden, c.num_mask_tokens, c.iou_head_depth)

    def forward(self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
        """image [n,d,g,g] (one embedding per prompt), image_pe [1,d,g,g], sparse [n,T,d], dense [n,d,g,g] ->
        mask logits [n,K,4g,4g], IoU predictions [n,K] (K = num_mask_tokens)."""
        n = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])[None].expand(n, -1, -1)
        tokens = torch.cat([out_tokens.to(sparse.dtype), sparse], 1)
        src = image + dense
        b, c, h, w = src.shape
        hs, src_out = self.transformer(src, image_pe.expand(n, -1, -1, -1), tokens)
        k = self.mask_tokens.weight.shape[0]
        mask_out = hs[:, 1:1 + k]
        up = self.output_upscaling(src_out.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        bu, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        return masks, self.iou_prediction_head(hs[:, 0])


# ------------------------------------------------------------------------------------------------ the model
class SamModel(nn.Module):
    """SAM: ``embed`` frames once, then ``decode`` any number of prompts against those embeddings.

    Coordinates of prompts are in the frame's pixels (x, y; pixel centres at integers), mapped to the resized
    input like the official predictor (scale by new/old size).
    """

    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def arch(self) -> str:
        return self.config.arch

    def reset_constants(self) -> None:
        """Refill the non-persistent buffers after ``to_empty`` (the loader builds on the meta device)."""
        self.pixel_mean.copy_(torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.pixel_std.copy_(torch.tensor(PIXEL_STD).view(1, 3, 1, 1))

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of a frame resized so its long side is img_size (the official rounding)."""
        scale = self.config.img_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def preprocess(self, frames: Tensor) -> Tensor:
        """[N,3,H,W] RGB [0,1] -> normalised [N,3,img,img]: long side resized to img_size (bilinear, antialiased),
        normalised with the official mean/std, zero-padded right and bottom."""
        h, w = frames.shape[-2:]
        nh, nw = self.input_size(h, w)
        p = self.pixel_mean
        x = frames.to(p.device, p.dtype)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = (x * 255.0 - p) / self.pixel_std
        s = self.config.img_size
        return F.pad(x, (0, s - nw, 0, s - nh))

    @torch.inference_mode()
    def embed(self, frames: Tensor, *, batch_size: int = 1) -> Tensor:
        """Image embeddings [N,prompt_dim,grid,grid] of frames [N,3,H,W] RGB [0,1], ``batch_size`` at a time."""
        out = [self.image_encoder(self.preprocess(frames[i:i + batch_size]))
               for i in range(0, frames.shape[0], max(1, int(batch_size)))]
        if not out:
            g = self.config.grid
            return self.pixel_mean.new_zeros(0, self.config.prompt_dim, g, g)
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, embeddings: Tensor, frame_size: tuple[int, int], *, points: Tensor | None = None,
               labels: Tensor | None = None, boxes: Tensor | None = None,
               multimask: bool = False) -> tuple[Tensor, Tensor]:
        """Mask logits for n prompts, each with its own image embedding.

        embeddings [n,d,g,g] (``embed`` rows, one per prompt; rows may repeat), frame_size (H, W) of the frames
        they came from, points [n,P,2] frame px with labels [n,P] (1 positive, 0 negative), boxes [n,4] x1,y1,x2,y2
        frame px. Returns (logits [n,K,4g,4g] on the padded input square, > 0 = inside; predicted IoU [n,K]),
        K = 1 (the single-mask output) or num_mask_tokens - 1 (multimask).
        """
        n = embeddings.shape[0]
        h, w = frame_size
        nh, nw = self.input_size(h, w)
        scale = embeddings.new_tensor([nw / w, nh / h])
        pts = None if points is None else points.to(embeddings) * scale
        bxs = None if boxes is None else (boxes.to(embeddings).reshape(n, 2, 2) * scale).reshape(n, 4)
        lab = None if labels is None else labels.to(embeddings.device, torch.int64)
        sparse, dense = self.prompt_encoder(pts, lab, bxs, n)
        logits, iou = self.mask_decoder(embeddings, self.prompt_encoder.dense_pe().to(embeddings.dtype), sparse,
                                        dense.to(embeddings.dtype))
        sel = slice(1, None) if multimask else slice(0, 1)
        return logits[:, sel], iou[:, sel]
