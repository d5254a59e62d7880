"""SimpleShot (Wang et al., SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot
Learning, 2019): a backbone trained as an ordinary classifier; at test time, nearest class
centroid in Euclidean distance on un-normalised (UN), L2-normalised (L2N) or centred then
L2-normalised (CL2N) features, the centre being the mean feature of training images."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FewShotMethod, MethodOptions, bounded, class_means
from .finetune import FlatHead, classification_recipes
from .recipes import RecipeTable
from .registry import register_method


@dataclasses.dataclass(frozen=True)
class SimpleShotOptions(MethodOptions):
    """Options of :class:`SimpleShot`.

    Attributes:
        normalize: ``"cl2n"`` (subtract the training mean, then L2-normalise; Wang et al.'s
            best), ``"l2n"`` or ``"un"`` (none).
        centre_images: training images whose mean feature is the CL2N centre.
    """

    method_name: ClassVar[str] = "simpleshot"

    normalize: Literal["un", "l2n", "cl2n"] = "cl2n"
    centre_images: int = bounded(10_000, ge=1)


@register_method
class SimpleShot(FewShotMethod):
    """Nearest centroid: scores are minus squared Euclidean distances of (transformed) query
    features to the class means of (transformed) support features."""

    name = "simpleshot"
    Options = SimpleShotOptions
    options: SimpleShotOptions
    recipes: ClassVar[RecipeTable] = classification_recipes()

    def __init__(self, backbone: nn.Module, options: SimpleShotOptions | None = None) -> None:
        super().__init__(backbone, options)
        shape = self.feature_shape
        dim = shape[0] * shape[1] * shape[2] if shape is not None else self.feature_channels
        self.centre: Tensor
        self.register_buffer("centre", torch.zeros(dim))

    def training_head(self, n_classes: int) -> nn.Module:
        return FlatHead(nn.Linear(len(self.centre), n_classes))

    def on_trained(self, embed_training_images: Callable[[int], Tensor]) -> None:
        """The CL2N centre: the mean feature of a seeded sample of training images."""
        features = embed_training_images(self.options.centre_images).flatten(1)
        self.centre.copy_(features.mean(0).to(self.centre))

    def transform(self, features: Tensor) -> Tensor:
        """``[B, D, h, w]`` -> ``[B, D*h*w]`` as the options say."""
        flat = features.flatten(1)
        if self.options.normalize == "cl2n":
            flat = flat - self.centre
        if self.options.normalize in ("l2n", "cl2n"):
            flat = F.normalize(flat, dim=1)
        return flat

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        centroids = class_means(self.transform(support), support_y, n_way)  # [N, D]
        difference = self.transform(query).unsqueeze(1) - centroids.unsqueeze(0)  # [Q, N, D]
        return -difference.pow(2).sum(-1)

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.cross_entropy(scores, query_y)
