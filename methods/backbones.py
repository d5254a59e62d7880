"""Embedding networks: Conv-4 in two layouts, and (in :mod:`methods.resnets`) ResNet-12 and
ResNet-18; :func:`build_backbone` builds any of them by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
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


def folded_batch_norm(norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``(scale, shift)``, each ``[C]``, with ``norm(x) == x * scale + shift`` per channel when
    ``norm`` uses its running statistics (eval mode)."""
    running_mean, running_var = cast(Tensor, norm.running_mean), cast(Tensor, norm.running_var)
    scale = norm.weight / torch.sqrt(running_var + norm.eps)
    return scale, norm.bias - running_mean * scale


class ConvBlock(nn.Module):
    """3x3 convolution, BatchNorm, optional 2x2 max-pool, ReLU.

    The ReLU runs after the pool (the two commute, and the pooled map is 4x smaller). In eval
    mode the normalisation uses running statistics, so it is folded into the convolution's
    weights and bias: one pass over the map instead of two, same outputs up to rounding.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=padding)
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        if self.norm.training:
            x = self.norm(self.conv(x))
        else:
            scale, shift = folded_batch_norm(self.norm)
            weight = self.conv.weight * scale.view(-1, 1, 1, 1)
            bias = cast(Tensor, self.conv.bias) * scale + shift
            x = F.conv2d(x, weight, bias, padding=self.conv.padding)
        if self.pool:
            x = F.max_pool2d(x, 2)
        return F.relu(x)


class Conv4(nn.Module):
    """Conv-4 embedding network returning feature maps; methods decide how to reduce them.

    Args:
        in_channels: channels of the input images (1 for Omniglot, 3 for RGB).
        config: the block layout.
        channels_last: compute in channels-last memory format (the same numbers; on CPU about
            twice as fast for these small convolutions, see results/timing/).
        cpu_eval_chunk_bytes: in eval mode on CPU, images go through in chunks whose first
            feature map fits in this many bytes, so activations stay in cache (up to 3x faster
            on large episodes; in eval mode images do not interact, so outputs are unchanged).
        image_size: side of the square images it will see, when known: heads sized by the
            feature map (see :attr:`feature_shape`) need it.

    Shapes:
        input ``[B, in_channels, H, W]`` (any H, W that survive the pooling) ->
        output ``[B, config.channels, h, w]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        config: Conv4Config = Conv4Config(),
        channels_last: bool = True,
        cpu_eval_chunk_bytes: int = 12 * 2**20,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.cpu_eval_chunk_bytes = cpu_eval_chunk_bytes
        self.in_channels = in_channels
        self.config = config
        self.out_channels = config.channels
        self.channels_last = channels_last
        blocks = []
        channels_in = in_channels
        for pool, padding in zip(config.pool, config.padding):
            blocks.append(ConvBlock(channels_in, config.channels, padding, pool))
            channels_in = config.channels
        self.blocks = nn.Sequential(*blocks)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv4 expects images [B, {self.in_channels}, H, W], got {tuple(images.shape)}"
            )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if not self.training and images.device.type == "cpu":
            first_map_bytes = 4 * self.out_channels * images.shape[-2] * images.shape[-1]
            chunk = max(1, self.cpu_eval_chunk_bytes // first_map_bytes)
            if len(images) > chunk:
                return torch.cat([self.blocks(part) for part in images.split(chunk)])
        return self.blocks(images)

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        """``(C, h, w)`` of the feature map of one image, ``None`` when the image size is not
        known."""
        if self.image_size is None:
            return None
        return self.output_shape((self.in_channels, self.image_size, self.image_size))

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


#: Every backbone name :func:`build_backbone` accepts.
BACKBONE_NAMES = (*BACKBONES, "resnet12", "resnet18")


def build_backbone(name: str, in_channels: int, image_size: int | None = None) -> nn.Module:
    """Backbone ``name`` for images of ``in_channels`` channels and side ``image_size``.

    Every backbone maps ``[B, in_channels, S, S]`` to feature maps ``[B, D, h, w]`` and has
    ``out_channels`` (D) and ``feature_shape`` (``(D, h, w)``, or ``None`` when unknown).

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    if name in BACKBONES:
        return Conv4(in_channels, BACKBONES[name], image_size=image_size)
    from .resnets import ResNet12, ResNet18

    if name == "resnet12":
        return ResNet12(in_channels, image_size)
    if name == "resnet18":
        return ResNet18(in_channels, image_size)
    raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONE_NAMES)}")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
