"""The networks: the paper's cross-attention model (Table 2), its ablation variants and Han et al.'s CNN.

Every network takes ``mel, mask: float32 [batch, 1, n_mels, frames]`` and returns logits
``[batch, n_classes]``; ``embed`` returns the vector the classification head sees. None
depends on the frame count: 100 frames give a 16 x 12 = 192-token grid, 300 give 16 x 37.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from instrumentd.pipeline.errors import ParameterError

from .classes import VARIANT_NAMES

LEAK = 0.33  # LeakyReLU slope, the paper's alpha
D_MODEL = 256  # projection width (Table 2's parameter counts; the text's 512 does not add up)
N_HEADS = 4
D_FF = 512
HEAD_HIDDEN = 512
DROPOUT = 0.5


def _conv_act_norm(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 conv (zero pad 1) -> LeakyReLU(0.33) -> BatchNorm, the paper's order."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(LEAK), nn.BatchNorm2d(c_out)]


class _ConvBranch(nn.Module):
    """Blocks of ``convs_per_block`` conv layers, one block per entry of ``channels``, each closed by
    2x2 max-pooling: ``[B, 1, 128, F] -> [B, channels[-1], 16, F // 8]``."""

    channels: tuple[int, ...]
    convs_per_block: int

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in self.channels:
            for _ in range(self.convs_per_block):
                layers += _conv_act_norm(c_in, c)
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MelBranch(_ConvBranch):
    """Three double-conv blocks (16, 32, 64 channels), each closed by 2x2 max-pooling.

    ``[B, 1, 128, F] -> [B, 64, 16, F // 8]``
    """

    channels = (16, 32, 64)
    convs_per_block = 2


class MaskBranch(_ConvBranch):
    """Three single-conv blocks (32, 64, 128 channels), each closed by 2x2 max-pooling.

    ``[B, 1, 128, F] -> [B, 128, 16, F // 8]``
    """

    channels = (32, 64, 128)
    convs_per_block = 1


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H*W, C]``"""
    return x.flatten(2).transpose(1, 2)


def _feed_forward() -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_MODEL, D_FF), nn.ReLU(), nn.Linear(D_FF, D_MODEL))


def _head(d_in: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, HEAD_HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HEAD_HIDDEN, n_classes))


class _PaperNet(nn.Module):
    """What the paper's network and its ablations share: the branches a variant uses, each followed by
    a 1x1 projection to ``D_MODEL``-wide tokens, and ``forward = head(embed)``.

    The branches are registered before the projections (mel first), the order the checkpoints and
    the parameter initialisation under a fixed seed were made in.
    """

    head: nn.Sequential

    def __init__(self, *, mel: bool, mask: bool) -> None:
        super().__init__()
        if mel:
            self.mel_branch = MelBranch()
        if mask:
            self.mask_branch = MaskBranch()
        if mel:
            self.mel_proj = nn.Conv2d(MelBranch.channels[-1], D_MODEL, 1)
        if mask:
            self.mask_proj = nn.Conv2d(MaskBranch.channels[-1], D_MODEL, 1)

    def mel_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 128, F] -> [B, 16 * (F // 8), 256]``"""
        return _tokens(self.mel_proj(self.mel_branch(mel)))

    def mask_tokens(self, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 128, F] -> [B, 16 * (F // 8), 256]``"""
        return _tokens(self.mask_proj(self.mask_branch(mask)))

    def embed(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(mel, mask))


class CrossAttentionNet(_PaperNet):
    """The paper's model (Table 2, 878,331 parameters with 11 classes).

    Mel tokens are the queries, mask tokens the keys and values. The attention and
    feed-forward outputs are added to their inputs (parameter-free residual paths), so the
    spectral tokens reach the head even where the mask is empty.
    """

    def __init__(self, n_classes: int = 11):
        super().__init__(mel=True, mask=True)
        self.attention = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True)
        self.feed_forward = _feed_forward()
        self.head = _head(D_MODEL, n_classes)

    def embed(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 128, F]`` twice -> ``[B, 256]``, the mean over tokens."""
        query = self.mel_tokens(mel)
        key = self.mask_tokens(mask)
        fused = query + self.attention(query, key, key, need_weights=False)[0]
        fused = fused + self.feed_forward(fused)
        return fused.mean(dim=1)


class _OneBranchNet(_PaperNet):
    """An ablation on one input (``branch``, ``"mel"`` or ``"mask"``): that branch, its projection and
    the residual feed-forward; the other input is ignored."""

    branch: str

    def __init__(self, n_classes: int = 11):
        super().__init__(mel=self.branch == "mel", mask=self.branch == "mask")
        self.feed_forward = _feed_forward()
        self.head = _head(D_MODEL, n_classes)

    def embed(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 128, F]`` twice -> ``[B, 256]``, the mean over tokens."""
        tokens = self.mel_tokens(mel) if self.branch == "mel" else self.mask_tokens(mask)
        return (tokens + self.feed_forward(tokens)).mean(dim=1)


class MelOnlyNet(_OneBranchNet):
    """Ablation "MelCNN-only": the mel branch, projection and feed-forward; the mask is ignored."""

    branch = "mel"


class MaskOnlyNet(_OneBranchNet):
    """Ablation "MaskCNN-only": the mask branch, projection and feed-forward; the mel is ignored."""

    branch = "mask"


class ConcatNet(_PaperNet):
    """Ablation "Mel+Mask concat": both branches, projected tokens concatenated, no attention."""

    def __init__(self, n_classes: int = 11):
        super().__init__(mel=True, mask=True)
        self.head = _head(2 * D_MODEL, n_classes)

    def embed(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 128, F]`` twice -> ``[B, 512]``, each branch's token mean side by side."""
        return torch.cat([self.mel_tokens(mel).mean(dim=1), self.mask_tokens(mask).mean(dim=1)], dim=1)


class HanNet(nn.Module):
    """Han et al. 2017's CNN on the mel spectrogram: four double-conv blocks (32-256 channels,
    3x3 max-pooling, dropout 0.25), global max-pooling, a 1024-unit dense layer, dropout 0.5."""

    def __init__(self, n_classes: int = 11):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate((32, 64, 128, 256)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(LEAK)]
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(LEAK)]
            if i < 3:
                layers += [nn.MaxPool2d(3, ceil_mode=True), nn.Dropout(0.25)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(256, 1024), nn.LeakyReLU(LEAK), nn.Dropout(DROPOUT))
        self.out = nn.Linear(1024, n_classes)

    def embed(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(mel).amax(dim=(2, 3)))

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(mel, mask))


VARIANTS: dict[str, Callable[[int], nn.Module]] = {
    "cross": CrossAttentionNet,
    "mel": MelOnlyNet,
    "mask": MaskOnlyNet,
    "concat": ConcatNet,
    "han": HanNet,
}
assert tuple(VARIANTS) == VARIANT_NAMES, "model/classes.py names the variants built here"
DESCRIPTIONS = {
    "cross": "Cross-attention (the paper's model)",
    "mel": "MelCNN-only",
    "mask": "MaskCNN-only",
    "concat": "Mel + Mask (concat)",
    "han": "Han et al. 2017 CNN",
}


def build(variant: str, n_classes: int = 11) -> nn.Module:
    """A fresh network of the named variant (``cross``, ``mel``, ``mask``, ``concat``, ``han``)."""
    if variant not in VARIANTS:
        raise ParameterError(f"unknown model variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant](n_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
