"""Prototypical Networks (Snell et al., NeurIPS 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from .base import FewShotMethod, class_means
from .recipes import (
    MINI_IMAGENET_VALIDATION,
    PAPER_CPU_VALIDATION,
    Recipe,
    RecipeFunction,
    TrainConfig,
    mini_imagenet_cpu_train,
    quick_recipe,
)
from .registry import register_method


def _paper(dataset: str, n_way: int, k_shot: int) -> Recipe:
    """Snell et al. 2017: 60-way training, 5 queries (miniImageNet: 30-way at 1 shot, 20-way at
    5 shots, 15 queries), training shot = test shot, lr halved every 2000 episodes; meant for a
    GPU."""
    if dataset == "mini-imagenet":
        train = TrainConfig(
            episodes=20_000,
            n_way=30 if k_shot == 1 else 20,
            k_shot=k_shot,
            n_query=15,
            lr_step=2000,
            val_every=1000,
            val_episodes=300,
            **MINI_IMAGENET_VALIDATION,
        )
        return Recipe(backbone="conv4", train=train)
    return Recipe(
        backbone="conv4",
        train=TrainConfig(
            episodes=20_000,
            n_way=60,
            k_shot=k_shot,
            n_query=5,
            lr_step=2000,
            val_every=1000,
            val_episodes=300,
        ),
    )


def _paper_cpu(dataset: str, n_way: int, k_shot: int) -> Recipe:
    """Snell et al.'s recipe (60-way, 5 queries, training shot = test shot) for 3,000 / 1,500
    episodes instead of training to convergence; on miniImageNet, see
    :func:`~methods.recipes.mini_imagenet_cpu_train`."""
    if dataset == "mini-imagenet":
        return Recipe(backbone="conv4", train=mini_imagenet_cpu_train(k_shot))
    train = TrainConfig(
        episodes=3000 if k_shot == 1 else 1500,
        n_way=60,
        k_shot=k_shot,
        n_query=5,
        **PAPER_CPU_VALIDATION,
    )
    return Recipe(backbone="conv4", train=train)


@register_method
class PrototypicalNet(FewShotMethod):
    """Prototypical Networks: negative squared Euclidean distance to the class-mean embedding."""

    name = "protonet"
    recipes: ClassVar[dict[str, RecipeFunction]] = {
        "quick": quick_recipe("conv4"),
        "paper": _paper,
        "paper-cpu": _paper_cpu,
    }

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        prototypes = class_means(support.flatten(1), support_y, n_way)  # [N, D]
        difference = query.flatten(1).unsqueeze(1) - prototypes.unsqueeze(0)  # [Q, N, D]
        return -difference.pow(2).sum(-1)

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.cross_entropy(scores, query_y)
