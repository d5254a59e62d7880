"""Baseline++ (Chen et al. 2019): Baseline with cosine classifiers, during training and at test
time (logits = scale x cosine similarity to each class's weight vector)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch import nn

from .baseline import Baseline, BaselineOptions
from .finetune import CHEN_2019, CosineClassifier, FlatHead, classification_recipes, cosine_scale
from .recipes import PublishedResult, RecipeTable
from .registry import register_method


@dataclasses.dataclass(frozen=True)
class BaselinePlusPlusOptions(BaselineOptions):
    """Options of :class:`BaselinePlusPlus`: those of Baseline."""

    method_name: ClassVar[str] = "baselinepp"


@register_method
class BaselinePlusPlus(Baseline):
    """Cosine classifier over the training classes; per episode, a new cosine classifier on the
    support features, trained as Baseline's (scale 2 up to 200 classes, else 10, as Chen et al.)."""

    name = "baselinepp"
    Options = BaselinePlusPlusOptions
    published: ClassVar[tuple[PublishedResult, ...]] = (
        PublishedResult("mini-imagenet", "standard", 5, 1, 48.24, None, CHEN_2019),
        PublishedResult("mini-imagenet", "standard", 5, 5, 66.43, None, CHEN_2019),
    )
    recipes: ClassVar[RecipeTable] = classification_recipes(pretrained_steps=300)

    def training_head(self, n_classes: int) -> nn.Module:
        return FlatHead(CosineClassifier(self._dim(), n_classes, cosine_scale(n_classes)))

    def test_classifier(self, dim: int, n_way: int) -> nn.Module:
        return CosineClassifier(dim, n_way, cosine_scale(n_way))
