"""Building blocks of the CA-Stream: the cross-attention block and the class-token stream."""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossAttention(nn.Module):
    """One CA block: a class token attends over a feature map, pools it, and is projected.

    As in the authors' implementation: query = the token, keys = values = the raw flattened
    feature vectors (no positional encoding, no q/k/v projections, no norm, no MLP, no residual),
    logits scaled by ``1/sqrt(head_dim)``, softmax over the ``H*W`` positions, attention-weighted
    sum of the feature vectors, then ``Linear(dim -> out_dim)``. The only learnable weights are
    that projection. ``heads > 1`` splits the channels into equal groups, each with its own
    softmax (the official code's multi-head option did not run; this one does).
    """

    def __init__(self, dim: int, out_dim: int, heads: int = 1) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"heads={heads} must be >= 1 and divide the feature width {dim}")
        self.dim, self.out_dim, self.heads = dim, out_dim, heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.proj = nn.Linear(dim, out_dim)
        nn.init.xavier_uniform_(self.proj.weight)

    def forward(self, features: torch.Tensor, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(new_token (B, out_dim), attention (B, heads, H, W))`` for features (B, C, H, W)."""
        b, c, h, w = features.shape
        if c != self.dim or token.shape[-1] != self.dim:
            raise ValueError(f"CA block expects width {self.dim}, got features {c} and token {token.shape[-1]}")
        f = features.reshape(b, self.heads, c // self.heads, h * w)  # (B, heads, d, T)
        q = token.reshape(b, self.heads, c // self.heads, 1)
        logits = (f * q).sum(dim=2) * self.scale  # (B, heads, T)
        attn = logits.softmax(dim=-1)
        pooled = (f * attn.unsqueeze(2)).sum(dim=-1).reshape(b, c)
        return self.proj(pooled), attn.reshape(b, self.heads, h, w)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_dim={self.out_dim}, heads={self.heads}"


class ClassTokenStream(nn.Module):
    """The learnable class token and one :class:`CrossAttention` block per tap point.

    ``widths[i]`` is the channel width of tap ``i``; the last block projects to ``out_dim``
    (the classifier's input width). The token is initialised element-wise from N(1, 1).
    """

    def __init__(self, widths: list[int], out_dim: int, heads: int = 1) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, widths[0]) + 1.0)
        outs = list(widths[1:]) + [out_dim]
        self.blocks = nn.ModuleList(CrossAttention(w, o, heads) for w, o in zip(widths, outs))

    def init_projections(self, std: float) -> None:
        """Re-initialise every block's projection: normal weights of ``std`` (PyTorch's ``trunc_normal_``
        with its default bounds of -2 and 2, as the authors' code calls it), zero bias."""
        for block in self.blocks:
            nn.init.trunc_normal_(block.proj.weight, std=std)
            nn.init.zeros_(block.proj.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the token through every block; return the final token and each block's attention."""
        if len(features) != len(self.blocks):
            raise ValueError(f"stream has {len(self.blocks)} blocks but got {len(features)} feature maps")
        token = self.cls_token.expand(features[0].shape[0], -1).to(features[0].dtype)
        attentions = []
        for block, f in zip(self.blocks, features):
            token, attn = block(f, token)
            attentions.append(attn)
        return token, attentions
