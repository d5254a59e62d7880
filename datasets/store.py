"""The in-memory, class-indexed image store that every episode is drawn from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FewShotSplit:
    """One split of a few-shot dataset, held in memory and indexed by class.

    A class is a run of consecutive images in ``images`` plus a number of quarter turns applied
    when its images are drawn, so that Omniglot's rotated classes share the pixels of their
    character instead of storing four copies.

    Attributes:
        name: identifies the split in seeds and records, e.g. ``"omniglot/vinyals/test"``.
        images: uint8 ``[M, C, H, W]``, all images the split's classes draw from.
        class_start: int64 ``[n_classes]``, index in ``images`` of each class's first image.
        class_size: int64 ``[n_classes]``, number of images of each class.
        class_rotation: int64 ``[n_classes]``, quarter turns (0-3, counter-clockwise) per class.
        class_names: one readable name per class, e.g. ``"Gurmukhi/character42/rot090"``.
        mean: per-channel mean subtracted after scaling to [0, 1], or ``None``.
        std: per-channel std divided by after that, or ``None``.
        class_group: a group name per class (Omniglot: its alphabet), for episodes drawn within
            one group; ``None`` when the dataset has none.
        image_drawer: int64 ``[M]``, who made each image of ``images`` (Omniglot: the drawer),
            for episodes whose support and query come from different people; ``None`` when
            unknown.
    """

    name: str
    images: Tensor
    class_start: Tensor
    class_size: Tensor
    class_rotation: Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_group: tuple[str, ...] | None = None
    image_drawer: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"split {self.name!r}: images must be a uint8 tensor [M, C, H, W], "
                f"got {self.images.dtype} with shape {tuple(self.images.shape)}"
            )
        n = len(self.class_names)
        for field in ("class_start", "class_size", "class_rotation"):
            value = getattr(self, field)
            if value.shape != (n,):
                raise ValueError(
                    f"split {self.name!r}: {field} must have shape [{n}] (one entry per class), "
                    f"got {tuple(value.shape)}"
                )
        if n == 0:
            raise ValueError(f"split {self.name!r} has no classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> FewShotSplit:
        """This split with its images in ``device``'s memory; the class indices stay on the host.

        Episodes gathered from the result are built on ``device``: on a GPU, indexing the images
        and scaling them to float there replaces a host-side copy and conversion of every
        episode's pixels (on miniImageNet most of a GPU training step) with the same numbers.
        """
        if self.images.device == torch.device(device):
            return self
        return dataclasses.replace(self, images=self.images.to(device))

    def gather(self, class_ids: Tensor, sample_ids: Tensor) -> Tensor:
        """Images of the given classes and samples, as float tensors ready for a model.

        Args:
            class_ids: int64 ``[N]``, indices of classes in this split.
            sample_ids: int64 ``[N, S]``, sample indices within each class.

        Returns:
            float32 ``[N, S, C, H, W]`` on the device of the split's images, scaled to [0, 1],
            rotated per class and normalised when the split has a mean and std.
        """
        return self.as_model_input(self.gather_pixels(class_ids, sample_ids))

    def gather_pixels(self, class_ids: Tensor, sample_ids: Tensor) -> Tensor:
        """The images :meth:`gather` returns, as uint8 ``[N, S, C, H, W]`` pixels (rotated per
        class, not scaled): what augmentation works on."""
        flat = self.class_start[class_ids].unsqueeze(1) + sample_ids
        batch = self.images[flat.to(self.images.device)]  # [N, S, C, H, W] uint8
        rotations = self.class_rotation[class_ids]
        if bool((rotations != 0).any()):
            batch = batch.clone()
            for turns in rotations.unique().tolist():
                if turns:
                    rows = (rotations == turns).to(batch.device)
                    batch[rows] = torch.rot90(batch[rows], k=int(turns), dims=(-2, -1))
        return batch

    def as_model_input(self, images: Tensor) -> Tensor:
        """uint8 images ``[..., C, H, W]`` of this split's kind as float model input: scaled to
        [0, 1] and normalised with the split's mean and std when it has them."""
        out = images.float().div_(255.0)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=out.device).view(-1, 1, 1)
            std = torch.tensor(self.std, device=out.device).view(-1, 1, 1)
            out = out.sub_(mean).div_(std)
        return out
