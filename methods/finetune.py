"""What the classification baselines share: their heads, their recipes, and the seeded test-time
training of a new classifier on an episode's support set (Chen et al. 2019)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .recipes import MINI_IMAGENET_VALIDATION, PAPER_CPU_VALIDATION, Recipe, TrainConfig


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
    features are copied outside it.
    """
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    # hundreds of tiny steps: one thread is 7x faster than two here (no fork-join per operator)
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(False), torch.enable_grad():
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


def classification_recipes(backbone: str = "conv4") -> dict[str, Any]:
    """The recipes of the classification baselines (Baseline, Baseline++, SimpleShot): trained as
    ordinary classifiers over all training classes (Adam 1e-3), validated on episodes.

    - ``quick``: 1,000 steps of 64 images (2-core CPU minutes on Omniglot);

    Training does not depend on the test setting, so validation has a fixed one-shot shape
    (20-way on Omniglot, 5-way on miniImageNet) and one model serves every test way and shot.
    - ``paper-cpu``: 6,000 steps of 64 images on Omniglot (about 90 epochs of the 4,112 Vinyals
      training classes' 82,240 images), 4,000 on miniImageNet (about 7 epochs of 38,400 images),
      the rate halved every 2,000 steps;
    - ``paper``: Chen et al. 2019's budget on miniImageNet (400 epochs of batches of 16: 960,000
      steps); on Omniglot 60 epochs of batches of 64; meant for a GPU.
    """

    def validation(dataset: str) -> dict[str, Any]:
        if dataset == "mini-imagenet":
            return {"val_every": 500, "val_episodes": 100, **MINI_IMAGENET_VALIDATION}
        return {k: v for k, v in PAPER_CPU_VALIDATION.items() if k != "lr_step"}

    def episode_shape(dataset: str) -> dict[str, int]:
        # the shape of validation episodes (one-shot); training itself draws mini-batches
        mini = dataset == "mini-imagenet"
        return {"n_way": 5 if mini else 20, "k_shot": 1, "n_query": 15 if mini else 5}

    def quick(dataset: str, n_way: int, k_shot: int) -> Recipe:
        train = TrainConfig(
            episodes=1000,
            lr_step=500,
            protocol="classification",
            batch_size=64,
            **episode_shape(dataset),
            **{**validation(dataset), "val_every": 250, "val_episodes": 100},
        )
        return Recipe(backbone=backbone, train=train)

    def paper_cpu(dataset: str, n_way: int, k_shot: int) -> Recipe:
        train = TrainConfig(
            episodes=4000 if dataset == "mini-imagenet" else 6000,
            lr_step=2000,
            protocol="classification",
            batch_size=64,
            **episode_shape(dataset),
            **validation(dataset),
        )
        return Recipe(backbone=backbone, train=train)

    def paper(dataset: str, n_way: int, k_shot: int) -> Recipe:
        mini = dataset == "mini-imagenet"
        train = TrainConfig(
            episodes=960_000 if mini else 60 * 82_240 // 64,
            **episode_shape(dataset),
            lr_step=10**9,  # Chen et al. keep Adam's rate fixed
            protocol="classification",
            batch_size=16 if mini else 64,
            **{**validation(dataset), "val_every": 10_000},
        )
        return Recipe(backbone=backbone, train=train)

    return {"quick": quick, "paper-cpu": paper_cpu, "paper": paper}
