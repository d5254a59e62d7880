"""What the classification baselines share: their heads, their recipes, and the seeded test-time
training of a new classifier on an episode's support set (Chen et al. 2019)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .recipes import (
    ANY_BACKBONE,
    CHARACTERS,
    MINI_IMAGENET_VALIDATION,
    NATURAL_IMAGES,
    NATURAL_PRETRAINING,
    PAPER_CPU_VALIDATION,
    Recipe,
    RecipeEntry,
    RecipeFunction,
    RecipeTable,
    TrainConfig,
)


class CosineClassifier(nn.Module):
    """Baseline++'s classifier as Chen et al. built it: logits
    ``scale * g_c * cos(feature, v_c)`` per class ``c``.

    Each class has a direction ``v_c`` and a learned norm ``g_c`` (a weight-normalised linear
    layer without bias, Salimans & Kingma 2016), initialised as PyTorch initialises a linear
    layer (``v_c`` uniform in +-1/sqrt(dim), ``g_c = |v_c|``, about 0.58). Both matter for the
    100 SGD passes of test-time training: a unit-norm weight without ``g`` turns about six
    times more slowly at the same learning rate, and with one support image per class the
    random start then dominates its scores.

    Shapes: ``[B, D] -> [B, n_classes]``.
    """

    def __init__(self, dim: int, n_classes: int, scale: float) -> None:
        super().__init__()
        bound = 1.0 / dim**0.5
        self.direction = nn.Parameter(torch.empty(n_classes, dim).uniform_(-bound, bound))
        self.norm = nn.Parameter(self.direction.detach().norm(dim=1).clone())
        self.scale = scale

    def forward(self, features: Tensor) -> Tensor:
        cosines = F.normalize(features, dim=1, eps=1e-5) @ F.normalize(self.direction, dim=1).T
        return self.scale * self.norm * cosines


class FlatHead(nn.Module):
    """A classifier on flattened feature maps: ``[B, D, h, w] -> [B, n_classes]``."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(features.flatten(1))


def cosine_scale(n_classes: int) -> float:
    """Chen et al.'s cosine-classifier scale: 2 for up to 200 classes, else 10."""
    return 2.0 if n_classes <= 200 else 10.0


def fit_support_classifier(
    make_classifier: Callable[[], nn.Module],
    support: Tensor,
    support_y: Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> nn.Module:
    """A new classifier from ``make_classifier()``, trained on support features ``[S, D]`` with
    labels ``[S]`` as Chen et al. do at test time: SGD (momentum 0.9, dampening 0.9, weight decay
    0.001), cross-entropy, ``steps`` passes over the support set in shuffled mini-batches of
    ``batch_size``. Its initialisation and the shuffling are seeded with ``seed``, so an
    episode's result is a function of its features.

    Works inside ``torch.inference_mode`` (as testing runs): the classifier is made and the
    features are copied outside it. Runs in fp32 whatever autocast surrounds it: under autocast
    the first forward pass caches a bfloat16 copy of the weights for the rest of the surrounding
    block, so every step would score with the untrained classifier (chance accuracy).
    """
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    # hundreds of tiny steps: one thread is 7x faster than two here (no fork-join per operator)
    torch.set_num_threads(1)
    try:
        no_autocast = torch.autocast(support.device.type, enabled=False)
        with torch.inference_mode(False), torch.enable_grad(), no_autocast:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                classifier = make_classifier().to(support.device)
            x, y = support.detach().clone().float(), support_y.detach().clone()
            optimizer = torch.optim.SGD(
                classifier.parameters(), lr=lr, momentum=0.9, dampening=0.9, weight_decay=0.001
            )
            for _ in range(steps):
                order = torch.randperm(len(x), generator=generator).to(x.device)
                for batch in order.split(batch_size):
                    loss = F.cross_entropy(classifier(x[batch]), y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        return classifier
    finally:
        torch.set_num_threads(threads)


CHEN_2019 = (
    "Chen et al., A Closer Look at Few-shot Classification, ICLR 2019, Table A5 (Conv-4, with "
    "data augmentation, 400 epochs of classification training)"
)


def classification_recipes(backbone: str = "conv4", pretrained_steps: int = 0) -> RecipeTable:
    """The recipes of the classification baselines (Baseline, Baseline++, SimpleShot): trained as
    ordinary classifiers over all training classes (Adam 1e-3), validated on episodes.

    Training does not depend on the test setting, so validation has a fixed one-shot shape
    (20-way on characters, 5-way on natural images, whose validation splits are small) and one
    model serves every test way and shot.

    - ``quick``: 1,000 steps of 64 images (2-core CPU minutes on Omniglot);
    - ``paper-cpu``: 6,000 steps of 64 images on characters (about 90 epochs of the 4,112
      Vinyals training classes' 82,240 images), 4,000 on natural images (about 7 epochs of
      miniImageNet's 38,400 images), the rate halved every 2,000 steps;
    - ``paper``: Chen et al. 2019's budget on miniImageNet (400 epochs of batches of 16: 960,000
      steps); on Omniglot 60 epochs of batches of 64; meant for a GPU;
    - ``pretrained-cpu`` (natural images): the shared pre-trained backbone
      (:data:`~methods.recipes.NATURAL_PRETRAINING`, itself trained this way), then
      ``pretrained_steps`` more steps through the method's own head (0: none).
    """
    table: list[RecipeEntry] = []
    for family, shape, validation, cpu_steps, paper_steps, paper_batch in (
        (CHARACTERS, (20, 5), _CHARACTER_VALIDATION, 6000, 60 * 82_240 // 64, 64),
        (NATURAL_IMAGES, (5, 15), _NATURAL_VALIDATION, 4000, 960_000, 16),
    ):
        table += [
            RecipeEntry(
                "quick",
                family,
                ANY_BACKBONE,
                _classifier(
                    backbone,
                    shape,
                    validation,
                    1000,
                    500,
                    64,
                    {"val_every": 250, "val_episodes": 100},
                ),
            ),
            RecipeEntry(
                "paper-cpu",
                family,
                ANY_BACKBONE,
                _classifier(backbone, shape, validation, cpu_steps, 2000, 64, {}),
            ),
            # Chen et al. keep Adam's rate fixed
            RecipeEntry(
                "paper",
                family,
                ANY_BACKBONE,
                _classifier(
                    backbone,
                    shape,
                    validation,
                    paper_steps,
                    10**9,
                    paper_batch,
                    {"val_every": 10_000},
                ),
            ),
        ]
    table.append(
        RecipeEntry(
            "pretrained-cpu",
            NATURAL_IMAGES,
            "conv4",
            _from_pretrained(pretrained_steps),
        )
    )
    return tuple(table)


#: Validation of the classification recipes per family: on characters 20-way one-shot
#: episodes of 5 queries every 1,000 steps; on natural images 5-way of 15 every 500.
_CHARACTER_VALIDATION: dict[str, Any] = {
    k: v for k, v in PAPER_CPU_VALIDATION.items() if k != "lr_step"
}
_NATURAL_VALIDATION: dict[str, Any] = {
    "val_every": 500,
    "val_episodes": 100,
    **MINI_IMAGENET_VALIDATION,
}


def _classifier(
    backbone: str,
    shape: tuple[int, int],
    validation: dict[str, Any],
    steps: int,
    lr_step: int,
    batch_size: int,
    validation_changes: dict[str, Any],
) -> RecipeFunction:
    """A classification recipe: ``steps`` steps of ``batch_size`` images, Adam 1e-3 halved every
    ``lr_step``; validation episodes ``shape`` = (way, queries), one-shot."""
    n_way, n_query = shape

    def recipe(test_way: int, test_shot: int) -> Recipe:
        train = TrainConfig(
            episodes=steps,
            n_way=n_way,
            k_shot=1,
            n_query=n_query,
            lr_step=lr_step,
            protocol="classification",
            batch_size=batch_size,
            **{**validation, **validation_changes},
        )
        return Recipe(backbone=backbone, train=train)

    return recipe


def _from_pretrained(steps: int) -> RecipeFunction:
    """The shared pre-trained Conv-4, then ``steps`` steps of the method's own classifier head
    (SGD from 0.01 with a cosine decay, the pre-training's batches and augmentation)."""

    def recipe(test_way: int, test_shot: int) -> Recipe:
        train = dataclasses.replace(
            NATURAL_PRETRAINING.train, episodes=steps, lr=0.01, warmup=None, val_every=0
        )
        return Recipe(backbone="conv4", train=train, pretrain=NATURAL_PRETRAINING)

    return recipe
