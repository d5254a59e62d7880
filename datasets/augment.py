"""Data augmentation of training images: batched, on uint8 pixels, reproducible from a seed.

A policy is a name in :data:`POLICIES` (the ``augment`` field of a training recipe). Every
random choice comes from the ``torch.Generator`` passed in, which the samplers seed from the
batch or episode index, so a training run sees the same augmented images whatever process,
executor or resumption produced them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``transform(images uint8 [B, C, H, W], generator) -> uint8 [B, C, H, W]``.
Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def pad_crop(images: Tensor, generator: torch.Generator, padding: int) -> Tensor:
    """Each image zero-padded by ``padding`` pixels on every side, then cropped back to its size
    at a uniformly drawn offset. ``[B, C, H, W] -> [B, C, H, W]``."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets)])


def horizontal_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image mirrored left-right with probability 1/2. ``[B, C, H, W] -> [B, C, H, W]``."""
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def resized_crop(
    images: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """torchvision's RandomResizedCrop per image: a crop covering a uniformly drawn share
    ``scale`` of the area at a log-uniform aspect ``ratio`` (the whole image when ten draws do
    not fit), resized back to ``H x W`` bilinearly. ``[B, C, H, W] -> [B, C, H, W]``."""
    from torchvision.transforms.v2 import functional as TF

    _, _, h, w = images.shape
    crops = []
    for image in images:
        top, left, height, width = _crop_box(h, w, scale, ratio, generator)
        crops.append(TF.resized_crop(image, top, left, height, width, [h, w], antialias=True))
    return torch.stack(crops)


def _crop_box(
    h: int,
    w: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of one random resized crop of an ``h x w`` image."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        draws = torch.rand(4, generator=generator).tolist()
        area = h * w * (scale[0] + (scale[1] - scale[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        width = round(math.sqrt(area * aspect))
        height = round(math.sqrt(area / aspect))
        if 0 < width <= w and 0 < height <= h:
            top = int(draws[2] * (h - height + 1))
            left = int(draws[3] * (w - width + 1))
            return top, left, height, width
    return 0, 0, h, w


def colour_jitter(images: Tensor, generator: torch.Generator, strength: float = 0.4) -> Tensor:
    """Brightness, contrast and saturation each scaled by a factor drawn uniformly from
    ``[1 - strength, 1 + strength]`` per image, in that order (RGB images; other channel
    counts get brightness and contrast only). ``[B, C, H, W] -> [B, C, H, W]`` uint8."""
    b, c = images.shape[:2]
    drawn = 1 + strength * (2 * torch.rand(b, 3, generator=generator) - 1)
    brightness, contrast, saturation = drawn.to(images.device).view(b, 3, 1, 1, 1).unbind(1)
    x = images.float() * brightness
    grey = _grey(x) if c == 3 else x.mean(1, keepdim=True)
    x = (x - grey.mean((1, 2, 3), keepdim=True)) * contrast + grey.mean((1, 2, 3), keepdim=True)
    if c == 3:
        grey = _grey(x)
        x = (x - grey) * saturation + grey
    return x.clamp_(0, 255).round_().to(torch.uint8)


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma of float RGB ``[B, 3, H, W]`` -> ``[B, 1, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _crop_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    return horizontal_flip(pad_crop(images, generator, padding=8), generator)


def _resized_crop_jitter_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    cropped = resized_crop(images, generator)
    return horizontal_flip(colour_jitter(cropped, generator), generator)


#: Named augmentation policies.
#: ``crop-flip``: zero-pad 8 pixels, random crop back to size, random horizontal flip (the
#: standard CIFAR and miniImageNet pre-training augmentation; SimpleShot, Meta-Baseline).
#: ``resized-crop-jitter-flip``: random resized crop (area 8-100%), colour jitter 0.4, random
#: horizontal flip (Chen et al. 2019, mmfewshot).
POLICIES: dict[str, Augmentation] = {
    "crop-flip": _crop_flip,
    "resized-crop-jitter-flip": _resized_crop_jitter_flip,
}


def augmentation(name: str) -> Augmentation:
    """The policy registered as ``name``; the error lists the valid names."""
    if name not in POLICIES:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(POLICIES)}")
    return POLICIES[name]


def augment_seed(seed: int) -> torch.Generator:
    """The generator of one batch's augmentation, from that batch's 63-bit seed (a stream apart
    from the one that chose the batch's images)."""
    return torch.Generator().manual_seed(seed ^ 0x5DEECE66D)


def augmented(policy: Augmentation | None, pixels: Tensor, seed: int) -> Tensor:
    """uint8 ``pixels [..., C, H, W]`` through ``policy`` seeded by ``seed`` (the batch's or
    episode's seed); unchanged without a policy."""
    if policy is None:
        return pixels
    flat = pixels.reshape(-1, *pixels.shape[-3:])
    return policy(flat, augment_seed(seed)).view_as(pixels)
