"""Deeper embedding networks: the few-shot ResNet-12 and torchvision's ResNet-18.

Both end in global average pooling, as in the papers and libraries users compare with
(MetaOptNet, FEAT, LibFewShot and mmfewshot for ResNet-12; Chen et al. 2019 for ResNet-18), so
methods see ``[B, D, 1, 1]`` features (D = 640 and 512): Prototypical and Matching Networks work
on the D-dimensional vectors, Matching Networks' FCE LSTMs are sized D, and the Relation
Network's padded relation module runs on 1x1 maps (its 3x3 convolutions then reduce to their
centre taps) with the paper's 64 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ResNet-12's channels per residual block (MetaOptNet's "wider" variant).
RESNET12_CHANNELS = (64, 160, 320, 640)


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018) on ``[B, C, H, W]`` maps, active in training mode only.

    Square blocks of ``block_size`` are zeroed, centred on positions drawn with probability
    ``gamma`` from the positions where a whole block fits; the rest is rescaled so that the
    expected sum is unchanged. The drop rate ramps up linearly from 0 to ``drop_rate`` over
    ``ramp_steps`` training steps, as in MetaOptNet's and learn2learn's ResNet-12 (the step
    count is a buffer, so it is saved with checkpoints).
    """

    def __init__(self, drop_rate: float, block_size: int, ramp_steps: int = 40_000) -> None:
        super().__init__()
        self.drop_rate = drop_rate
        self.block_size = block_size
        self.ramp_steps = ramp_steps
        self.steps: Tensor
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_rate <= 0:
            return x
        self.steps.add_(1)
        rate = min(self.drop_rate * int(self.steps) / self.ramp_steps, self.drop_rate)
        size = self.block_size
        height, width = x.shape[-2:]
        if height < size or width < size:
            return F.dropout(x, rate, training=True)
        gamma = rate / size**2 * (height * width) / ((height - size + 1) * (width - size + 1))
        centres = torch.bernoulli(
            torch.full(
                (*x.shape[:2], height - size + 1, width - size + 1),
                gamma,
                device=x.device,
                dtype=x.dtype,
            )
        )
        # a centre at (i, j) drops rows i..i+size-1 and columns j..j+size-1: a max-pool over
        # the centres padded by size-1 on every side marks exactly those, at the map's size
        pad = size - 1
        blocks = F.max_pool2d(F.pad(centres, (pad, pad, pad, pad)), size, stride=1)
        keep = 1.0 - blocks
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


class ResidualBlock(nn.Module):
    """Three 3x3 conv-BN-LeakyReLU(0.1) layers (the last activation after the residual sum), a
    1x1 conv-BN shortcut, 2x2 max-pool, then dropout or DropBlock (training only).

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H // 2, W // 2]``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, drop_rate: float, block_size: int | None
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(3):
            layers += [
                nn.Conv2d(
                    in_channels if index == 0 else out_channels, out_channels, 3, 1, 1, bias=False
                ),
                nn.BatchNorm2d(out_channels),
            ]
            if index < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.drop_rate = drop_rate
        self.drop_block = DropBlock(drop_rate, block_size) if block_size is not None else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.body(x) + self.shortcut(x), 0.1)
        out = F.max_pool2d(out, 2)
        if self.drop_block is not None:
            return self.drop_block(out)
        return F.dropout(out, self.drop_rate, training=self.training)


class ResNet12(nn.Module):
    """The few-shot ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019's MetaOptNet widths): four
    residual blocks of 64, 160, 320 and 640 channels, dropout 0.1 in the first two and DropBlock
    (rate 0.1, block 5) in the last two, then global average pooling; 12.4M parameters.

    Shapes: ``[B, in_channels, H, W] -> [B, 640, 1, 1]`` (84x84 images: 640x5x5 before pooling).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int | None = None,
        drop_rate: float = 0.1,
        block_size: int = 5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.out_channels = RESNET12_CHANNELS[-1]
        blocks = []
        previous = in_channels
        for index, channels in enumerate(RESNET12_CHANNELS):
            blocks.append(
                ResidualBlock(previous, channels, drop_rate, block_size if index >= 2 else None)
            )
            previous = channels
        self.blocks = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, images: Tensor) -> Tensor:
        maps = self.blocks(images)
        return maps.mean(dim=(-2, -1), keepdim=True)

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        """``(640, 1, 1)``: features are pooled whatever the image size."""
        return (self.out_channels, 1, 1)

    def map_shape(self, image_size: int) -> tuple[int, int, int]:
        """``(640, h, w)`` of the last block's map before pooling, for square images."""
        side = image_size
        for _ in RESNET12_CHANNELS:
            side //= 2
        return self.out_channels, side, side


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` (untrained), its classifier removed: the 7x7 stride-2 stem,
    3x3 max-pool, four stages of two basic blocks (64-512 channels), global average pooling;
    11.2M parameters. On 84x84 images the last stage's map is 512x3x3. (Chen et al. 2019 fed
    their ResNets 224x224 crops; here every backbone sees the dataset's images, 84x84 on
    miniImageNet, so backbones are compared on the same input.)

    Shapes: ``[B, in_channels, H, W] -> [B, 512, 1, 1]``.
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet18

        network = resnet18(weights=None)
        if in_channels != 3:
            network.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        network.fc = nn.Identity()
        self.network = network
        self.in_channels = in_channels
        self.image_size = image_size
        self.out_channels = 512

    def forward(self, images: Tensor) -> Tensor:
        n = self.network
        x = n.maxpool(n.relu(n.bn1(n.conv1(images))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.avgpool(x)

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        """``(512, 1, 1)``: features are pooled whatever the image size."""
        return (self.out_channels, 1, 1)
