"""Prototypical Networks (Snell et al., NeurIPS 2017)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from .base import FewShotMethod, MethodOptions, bounded, class_means
from .recipes import (
    ANY_BACKBONE,
    CHARACTERS,
    MINI_IMAGENET_VALIDATION,
    NATURAL_IMAGES,
    NATURAL_PRETRAINING,
    PAPER_CPU_VALIDATION,
    PublishedResult,
    Recipe,
    RecipeEntry,
    RecipeTable,
    TrainConfig,
    aims,
    entries,
    mini_imagenet_cpu_train,
    pretrained_meta_train,
    quick_recipe,
)
from .registry import register_method


def _paper_characters(n_way: int, k_shot: int) -> Recipe:
    """Snell et al. 2017 on Omniglot: 60-way training, 5 queries, training shot = test shot, lr
    halved every 2000 episodes; meant for a GPU."""
    train = TrainConfig(
        episodes=20_000,
        n_way=60,
        k_shot=k_shot,
        n_query=5,
        lr_step=2000,
        val_every=1000,
        val_episodes=300,
    )
    return Recipe(backbone="conv4", train=train)


def _paper_natural(n_way: int, k_shot: int) -> Recipe:
    """Snell et al. 2017 on miniImageNet: 30-way training at 1 shot, 20-way at 5 shots, 15
    queries, lr halved every 2000 episodes; squared distances divided by
    :data:`NATURAL_TEMPERATURE`; meant for a GPU."""
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
    return Recipe(backbone="conv4", train=train, options=dict(NATURAL_OPTIONS))


def _paper_cpu_characters(n_way: int, k_shot: int) -> Recipe:
    """Snell et al.'s Omniglot recipe (60-way, 5 queries, training shot = test shot) for 3,000 /
    1,500 episodes instead of training to convergence."""
    train = TrainConfig(
        episodes=3000 if k_shot == 1 else 1500,
        n_way=60,
        k_shot=k_shot,
        n_query=5,
        **PAPER_CPU_VALIDATION,
    )
    return Recipe(backbone="conv4", train=train)


def _paper_cpu_natural(n_way: int, k_shot: int) -> Recipe:
    """The ``paper-cpu`` training on natural images (see
    :func:`~methods.recipes.mini_imagenet_cpu_train`), distances divided by
    :data:`NATURAL_TEMPERATURE`."""
    return Recipe(
        backbone="conv4", train=mini_imagenet_cpu_train(k_shot), options=dict(NATURAL_OPTIONS)
    )


def _pretrained_cpu(n_way: int, k_shot: int) -> Recipe:
    """From the shared pre-trained Conv-4 (:data:`~methods.recipes.NATURAL_PRETRAINING`):
    Snell et al.'s wider training episodes (20-way, 5 queries) of the test shot, 3,000 / 4,000
    episodes at 1 / 5 shots (2,000 at 5 shots left validation rising until the rate reached 0:
    63.0, 63.8, 64.1, 64.2, 64.0% at episodes 1,000-2,000, test 64.82%), crop-and-flip augmentation, SGD (Nesterov momentum 0.9, weight
    decay 5e-4) from 0.01 with a cosine decay, distances divided by
    :data:`NATURAL_TEMPERATURE`. (300-episode pilots at 1 shot, 200 test episodes: 5-way at
    1e-3 39.4%, at 0.01 41.6%, at 0.05 36.1%; Adam 1e-4 39.4%; temperature 16 35.9%; 20-way
    5-query at 0.01 43.0%.)"""
    train = pretrained_meta_train(k_shot, episodes=3000 if k_shot == 1 else 4000, lr=0.01)
    return Recipe(
        backbone="conv4",
        train=dataclasses.replace(train, n_way=20, n_query=5),
        options=dict(NATURAL_OPTIONS),
        pretrain=NATURAL_PRETRAINING,
    )


#: The temperature dividing squared Euclidean distances on natural images (FEAT's 64): on 84x84
#: images Conv-4's 1,600 features make distances of thousands at initialisation, the softmax
#: saturates (initial loss near 200 at 5-way) and training spends its first hundreds of steps
#: shrinking the features instead of separating classes (see the diagnosis in docs/mini-imagenet.md).
NATURAL_TEMPERATURE = 64.0
NATURAL_OPTIONS: dict[str, Any] = {"temperature": NATURAL_TEMPERATURE}


#: Snell et al. 2017's miniImageNet results (Conv-4, 5-way test), in %.
_PROTONET = "Snell et al., Prototypical Networks for Few-shot Learning, NeurIPS 2017, Table 1"
_PROTONET_MINI = (
    "Snell et al., Prototypical Networks, NeurIPS 2017, Table 2 (Euclidean, 30-/20-way training)"
)
#: The accuracies of Snell et al.'s paper (Omniglot, Vinyals split; miniImageNet, Ravi & Larochelle).
PUBLISHED = (
    PublishedResult("omniglot", "vinyals", 5, 1, 98.8, None, _PROTONET),
    PublishedResult("omniglot", "vinyals", 5, 5, 99.7, None, _PROTONET),
    PublishedResult("omniglot", "vinyals", 20, 1, 96.0, None, _PROTONET),
    PublishedResult("omniglot", "vinyals", 20, 5, 98.9, None, _PROTONET),
    PublishedResult("mini-imagenet", "standard", 5, 1, 49.42, 0.78, _PROTONET_MINI),
    PublishedResult("mini-imagenet", "standard", 5, 5, 68.20, 0.66, _PROTONET_MINI),
)
MINI_PUBLISHED = aims(PUBLISHED, "mini-imagenet")


@dataclasses.dataclass(frozen=True)
class ProtoNetOptions(MethodOptions):
    """Options of :class:`PrototypicalNet`.

    Attributes:
        temperature: squared distances are divided by it before the softmax (> 0; 1 is Snell et
            al.'s formulation). Dividing by T is the same model as scaling the features by
            1/sqrt(T) (which the backbone's last BatchNorm can represent), so it changes how
            training starts, not what can be learned.
    """

    method_name: ClassVar[str] = "protonet"

    temperature: float = bounded(1.0, gt=0)


@register_method
class PrototypicalNet(FewShotMethod):
    """Prototypical Networks: negative squared Euclidean distance to the class-mean embedding."""

    name = "protonet"
    Options = ProtoNetOptions
    options: ProtoNetOptions
    published: ClassVar[tuple[PublishedResult, ...]] = PUBLISHED
    recipes: ClassVar[RecipeTable] = (
        *entries("quick", quick_recipe("conv4"), (CHARACTERS, NATURAL_IMAGES)),
        RecipeEntry("paper", CHARACTERS, ANY_BACKBONE, _paper_characters),
        RecipeEntry(
            "paper", NATURAL_IMAGES, "conv4", _paper_natural, MINI_PUBLISHED, _PROTONET_MINI
        ),
        RecipeEntry("paper-cpu", CHARACTERS, ANY_BACKBONE, _paper_cpu_characters),
        RecipeEntry(
            "paper-cpu", NATURAL_IMAGES, "conv4", _paper_cpu_natural, MINI_PUBLISHED, _PROTONET_MINI
        ),
        RecipeEntry(
            "pretrained-cpu",
            NATURAL_IMAGES,
            "conv4",
            _pretrained_cpu,
            MINI_PUBLISHED,
            _PROTONET_MINI,
        ),
    )

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        """Minus squared Euclidean distances ``[Q, N]`` to the class means, divided by the
        temperature."""
        prototypes = class_means(support.flatten(1), support_y, n_way)  # [N, D]
        difference = query.flatten(1).unsqueeze(1) - prototypes.unsqueeze(0)  # [Q, N, D]
        return -difference.pow(2).sum(-1) / self.options.temperature

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.cross_entropy(scores, query_y)
