"""Dense (per-patch) CLIP features from an open_clip ViT, training-free.

CLIP's patch tokens are poor at saying *what* is where because the last block mixes every token
into a global summary. The training-free segmentation baselines change only that last block:

* ``vanilla``: the unchanged block (patch tokens as they are);
* ``clearclip``: attention with query-query similarity, and no residual connection nor
  feed-forward network in the last block (ClearCLIP);
* ``naclip``: key-key similarity plus a Gaussian neighbourhood bias over patch positions, no
  residual nor feed-forward (NACLIP).

Tokens then go through ``ln_post`` and the projection into the joint space, like the class token.
Works for open_clip ``VisionTransformer`` models with a class token (every CLIP ViT), pooled by the
class token or by the mean of the patch tokens (``pool_type: avg``, as the demo's tiny model is).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["Variant", "VARIANTS", "dense_features", "interpolate_positions"]

Variant = Literal["vanilla", "clearclip", "naclip"]
VARIANTS = ("vanilla", "clearclip", "naclip")


def _check(visual: torch.nn.Module) -> None:
    ok = (
        hasattr(visual, "conv1")
        and hasattr(visual, "transformer")
        and getattr(visual, "attn_pool", None) is None
        and getattr(visual, "pool_type", "tok") in ("tok", "avg")
        and not getattr(visual, "final_ln_after_pool", False)
    )
    if not ok:
        raise ValueError(
            "dense features need an open_clip VisionTransformer with a class token and no attention "
            f"pooling (a CLIP ViT); got {type(visual).__name__}"
        )


def interpolate_positions(positional: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ``(1 + G*G, W)`` positional embedding to a ``grid`` of patches (bicubic)."""
    cls, patches = positional[:1], positional[1:]
    side = int(math.isqrt(patches.shape[0]))
    if (side, side) == grid:
        return positional
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])


def _gaussian_bias(grid: tuple[int, int], sigma: float, device, dtype) -> torch.Tensor:
    """``(1 + P, 1 + P)`` additive attention bias: exp(-d^2 / 2 sigma^2) between patch positions."""
    ys, xs = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).to(dtype)
    bias = torch.exp(-torch.cdist(pos, pos).pow(2) / (2 * sigma**2))
    return F.pad(bias, (1, 0, 1, 0))  # the class token gets no neighbourhood


def _modified_attention(block: torch.nn.Module, x: torch.Tensor, variant: Variant, grid, sigma: float) -> torch.Tensor:
    """The last block's attention output alone (no residual, no feed-forward). ``x``: ``(B, L, W)``."""
    attn = block.attn
    h = block.ln_1(x)
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    b, length, width = q.shape
    heads = attn.num_heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, length, heads, width // heads).transpose(1, 2)  # (B, H, L, hd)

    q, k, v = split(q), split(k), split(v)
    scale = (width // heads) ** -0.5
    if variant == "clearclip":
        logits = q @ q.transpose(-2, -1) * scale
    else:  # naclip
        logits = k @ k.transpose(-2, -1) * scale + _gaussian_bias(grid, sigma, x.device, q.dtype)
    out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, length, width)
    return block.ls_1(attn.out_proj(out))


@torch.no_grad()
def dense_features(
    visual: torch.nn.Module, images: torch.Tensor, variant: Variant = "vanilla", naclip_sigma: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled and per-patch embeddings in the joint space.

    Args:
        visual: ``model.visual`` of an open_clip CLIP ViT.
        images: ``(B, 3, H, W)`` normalised pixels; H and W multiples of the patch size (any size:
            the positional embedding is interpolated).
        variant: ``vanilla``, ``clearclip`` or ``naclip``.

    Returns:
        ``pooled``: ``(B, D)`` the model's pooled embedding (class token, or the mean of the patch
        tokens for ``pool_type: avg``; for ``vanilla``, what ``encode_image`` gives);
        ``patches``: ``(B, H / p, W / p, D)``; neither is normalised.
    """
    _check(visual)
    if variant not in VARIANTS:
        raise ValueError(f"unknown dense variant {variant!r}; choose from {VARIANTS}")
    x = visual.conv1(images)  # (B, W, gh, gw)
    grid = (x.shape[2], x.shape[3])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + interpolate_positions(visual.positional_embedding, grid).to(x.dtype)
    x = visual.ln_pre(x)
    transformer = visual.transformer
    batch_first = getattr(transformer, "batch_first", True)
    x = x if batch_first else x.transpose(0, 1)
    for block in transformer.resblocks[:-1]:
        x = block(x)
    x = x if batch_first else x.transpose(0, 1)  # (B, L, W) from here on
    last = transformer.resblocks[-1]
    if variant == "vanilla":
        x = last(x if batch_first else x.transpose(0, 1))
        x = x if batch_first else x.transpose(0, 1)
    else:
        x = _modified_attention(last, x, variant, grid, naclip_sigma)
    x = visual.ln_post(x)
    if visual.proj is not None:
        x = x @ visual.proj
    pooled = x[:, 1:].mean(dim=1) if getattr(visual, "pool_type", "tok") == "avg" else x[:, 0]
    return pooled, x[:, 1:].reshape(x.shape[0], grid[0], grid[1], -1)
