"""The one embedding network every method is built on: Conv-4."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Conv4Config:
    """Layout of a Conv-4 embedding: 4 blocks of 3x3 conv, BatchNorm, ReLU and optional 2x2 max-pool.

    Attributes:
        channels: filters per block.
        pool: whether each of the 4 blocks ends in a 2x2 max-pool.
        padding: zero padding of each block's convolution.
    """

    channels: int = 64
    pool: tuple[bool, bool, bool, bool] = (True, True, True, True)
    padding: tuple[int, int, int, int] = (1, 1, 1, 1)

    def __post_init__(self) -> None:
        if len(self.pool) != 4 or len(self.padding) != 4:
            raise ValueError(
                f"Conv4Config needs 4 pool flags and 4 paddings, got {self.pool} and {self.padding}"
            )
        if self.channels < 1:
            raise ValueError(f"Conv4Config.channels must be positive, got {self.channels}")


#: Named layouts. ``conv4``: every block pooled, padding 1 (Vinyals, Snell: 64x1x1 on 28x28).
#: ``conv4-relnet``: the Relation Network paper's layout (pools in blocks 1-2 only, unpadded
#: convolutions in blocks 1-2: 64x5x5 on 28x28, 64x19x19 on 84x84).
BACKBONES: dict[str, Conv4Config] = {
    "conv4": Conv4Config(),
    "conv4-relnet": Conv4Config(pool=(True, True, False, False), padding=(0, 0, 1, 1)),
}


def backbone_config(name: str) -> Conv4Config:
    """The named Conv-4 layout; the error lists the valid names."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return BACKBONES[name]


class Conv4(nn.Module):
    """Conv-4 embedding network returning feature maps; methods decide how to reduce them.

    Args:
        in_channels: channels of the input images (1 for Omniglot, 3 for RGB).
        config: the block layout.

    Shapes:
        input ``[B, in_channels, H, W]`` (any H, W that survive the pooling) ->
        output ``[B, config.channels, h, w]``.
    """

    def __init__(self, in_channels: int = 1, config: Conv4Config = Conv4Config()) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.config = config
        self.out_channels = config.channels
        blocks = []
        channels_in = in_channels
        for pool, padding in zip(config.pool, config.padding):
            layers: list[nn.Module] = [
                nn.Conv2d(channels_in, config.channels, 3, padding=padding),
                nn.BatchNorm2d(config.channels),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            channels_in = config.channels
        self.blocks = nn.Sequential(*blocks)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv4 expects images [B, {self.in_channels}, H, W], got {tuple(images.shape)}"
            )
        return self.blocks(images)

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, h, w)`` of the feature map for one image of shape ``(C, H, W)``."""
        _, h, w = image_shape
        for pool, padding in zip(self.config.pool, self.config.padding):
            h, w = h + 2 * padding - 2, w + 2 * padding - 2
            if pool:
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"images of shape {image_shape} are too small for this Conv-4 layout {self.config}"
            )
        return self.out_channels, h, w


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

