"""The CA-Stream model: a frozen timm CNN whose global average pooling is replaced by a
learned cross-attention stream (Torres et al., CVPR-W 2024, arXiv 2404.14996)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from .families import Family, family_of, get_submodule
from .layers import ClassTokenStream


class CAStream(nn.Module):
    """A frozen backbone plus a trainable class-token stream that replaces GAP.

    The backbone's feature path is untouched: forward hooks read the tap outputs while
    ``backbone.forward_features`` runs, the stream pools them, and the final token goes
    through the backbone's own head as a 1x1 map (its global pooling is then the identity,
    so ResNet's ``fc`` and ConvNeXt's norm + ``fc`` are applied exactly as in the paper).

    The backbone and its classifier are frozen (``requires_grad=False``) and stay in eval mode
    whatever ``train()`` is called with, so BatchNorm statistics never change.
    """

    pooling = "ca"

    def __init__(self, backbone: nn.Module, taps: Sequence[str], heads: int = 1, probe_size: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = tuple(taps)
        self.family: Family | None = family_of(backbone)
        self._tap_modules = [get_submodule(backbone, t) for t in self.taps]
        self._captured: list[torch.Tensor] | None = None
        for module in self._tap_modules:
            module.register_forward_hook(self._capture)
        for p in backbone.parameters():
            p.requires_grad_(False)
        widths = self._probe_widths(probe_size)
        self.widths = tuple(widths)
        self.heads = heads
        self.stream = ClassTokenStream(widths, backbone.num_features, heads)
        if self.family is not None and self.family.projection_std is not None:
            self.stream.init_projections(self.family.projection_std)
        self.train(False)

    def _capture(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._captured is not None:
            self._captured.append(output)

    @contextmanager
    def _capturing(self) -> Iterator[list[torch.Tensor]]:
        self._captured = captured = []
        try:
            yield captured
        finally:
            self._captured = None

    @torch.no_grad()
    def _probe_widths(self, size: int) -> list[int]:
        was_training = self.backbone.training
        self.backbone.eval()
        p = next(self.backbone.parameters())
        x = torch.zeros(1, 3, size, size, dtype=p.dtype, device=p.device)
        with self._capturing() as feats:
            self.backbone.forward_features(x)
        self.backbone.train(was_training)
        if len(feats) != len(self.taps):
            raise ValueError(
                f"tap modules {self.taps} produced {len(feats)} outputs in one backbone.forward_features; "
                "each tap must run exactly once there (the classifier head is not part of it)"
            )
        for name, f in zip(self.taps, feats):
            if f.ndim != 4:
                raise ValueError(f"tap {name!r} outputs shape {tuple(f.shape)}; CA-Stream needs (B, C, H, W) maps")
        return [f.shape[1] for f in feats]

    def train(self, mode: bool = True) -> "CAStream":
        """Set the stream's mode; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def tap_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps (B, C_k, h_k, w_k) that the stream's blocks attend over, in order."""
        with self._capturing() as feats:
            self.backbone.forward_features(x)
        return feats

    def forward_stream(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the final token (B, C) and every block's attention, each (B, heads, h, w)."""
        return self.stream(self.tap_features(x))

    def forward_attention(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's softmax attention, head-averaged, each (B, h, w) summing to 1."""
        return [a.mean(dim=1) for a in self.forward_stream(x)[1]]

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Logits; with ``return_attention`` also the last block's attention (B, h, w)."""
        token, attentions = self.forward_stream(x)
        logits = self.backbone.forward_head(token[:, :, None, None])
        if return_attention:
            return logits, attentions[-1].mean(dim=1)
        return logits

    def stream_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trainable stream (token and CA blocks): what a checkpoint needs to hold."""
        return self.stream.state_dict()
