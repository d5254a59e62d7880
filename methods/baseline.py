"""Baseline (Chen et al., A Closer Look at Few-shot Classification, ICLR 2019): a backbone
trained as an ordinary classifier over the training classes; at test time a new linear
classifier is trained on each episode's support features."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FewShotMethod, MethodOptions, bounded
from .finetune import CHEN_2019, FlatHead, classification_recipes, fit_support_classifier
from .recipes import PublishedResult, RecipeTable
from .registry import register_method


@dataclasses.dataclass(frozen=True)
class BaselineOptions(MethodOptions):
    """Options of :class:`Baseline` and :class:`~methods.baselinepp.BaselinePlusPlus`.

    Attributes:
        finetune_steps: passes over the support set when training the test-time classifier
            (Chen et al.: 100).
        finetune_batch: support images per step (Chen et al.: 4).
        finetune_lr: SGD's learning rate (Chen et al.: 0.01).
        seed: seeds the test-time classifier's initialisation and shuffling.
    """

    method_name: ClassVar[str] = "baseline"

    finetune_steps: int = bounded(100, ge=1)
    finetune_batch: int = bounded(4, ge=1)
    finetune_lr: float = bounded(0.01, gt=0)
    seed: int = 0


@register_method
class Baseline(FewShotMethod):
    """Linear classifier over the training classes; per episode, a new linear classifier on the
    support features (flattened), trained with the episode as Chen et al. do."""

    name = "baseline"
    Options = BaselineOptions
    options: BaselineOptions
    published: ClassVar[tuple[PublishedResult, ...]] = (
        PublishedResult("mini-imagenet", "standard", 5, 1, 42.11, None, CHEN_2019),
        PublishedResult("mini-imagenet", "standard", 5, 5, 62.53, None, CHEN_2019),
    )
    recipes: ClassVar[RecipeTable] = classification_recipes()

    def training_head(self, n_classes: int) -> nn.Module:
        return FlatHead(nn.Linear(self._dim(), n_classes))

    def test_classifier(self, dim: int, n_way: int) -> nn.Module:
        """The classifier trained per episode on ``dim`` features for ``n_way`` classes."""
        return nn.Linear(dim, n_way)

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        """Logits ``[Q, N]`` of the classifier trained on this episode's support set."""
        opts = self.options
        s, q = support.flatten(1), query.flatten(1)
        classifier = fit_support_classifier(
            lambda: self.test_classifier(s.shape[1], n_way),
            s,
            support_y,
            opts.finetune_steps,
            opts.finetune_batch,
            opts.finetune_lr,
            opts.seed,
        )
        with torch.no_grad():
            return classifier(q.float())

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.cross_entropy(scores, query_y)

    def _dim(self) -> int:
        shape = self.feature_shape
        return shape[0] * shape[1] * shape[2] if shape is not None else self.feature_channels
