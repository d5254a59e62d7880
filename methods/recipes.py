"""Training recipes: how a method's model is built and meta-trained for one test setting.

A method owns its recipes (see :meth:`methods.base.FewShotMethod.recipe`); the runner asks the
method registry for the recipe of a preset, a dataset and a test setting. The field names of
these dataclasses are part of every record's configuration hash: renaming or removing one
changes the identity of every committed record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """How one model is meta-trained.

    Attributes:
        episodes: training episodes (one optimiser step each).
        n_way, k_shot, n_query: the shape of training episodes.
        lr: Adam's initial learning rate.
        lr_step: episodes between learning-rate decays.
        lr_gamma: factor applied at each decay.
        grad_clip: maximum gradient norm, or ``None`` for no clipping.
        val_every: episodes between validations (0: validate only at the end, if at all).
        val_episodes: episodes per validation.
        time_budget_s: stop training after this many wall-clock seconds (``None``: no limit);
            the result records how many episodes were trained.
        val_n_way, val_n_query: the shape of validation episodes (their shot is the training
            shot). ``None`` validates on episodes shaped like the test setting, which ties the
            trained model to that setting; fixing them lets one model serve several test ways.
        protocol: ``None`` (episodic meta-training: one episode per step) or
            ``"classification"``: ordinary mini-batch classification over all training classes
            (cross-entropy through the method's training head), ``episodes`` steps of
            ``batch_size`` images; validation is on episodes either way.
        batch_size: images per step of the classification protocol.
        optimizer: ``None`` (Adam, ``lr``) or ``"sgd"``: SGD with Nesterov momentum
            ``momentum`` and weight decay ``weight_decay``.
        momentum, weight_decay: SGD's momentum and the weight decay (``None``: 0.9 and 0 for
            SGD; Adam takes ``weight_decay`` too).
        schedule: ``None`` (``lr`` times ``lr_gamma`` every ``lr_step`` episodes) or
            ``"cosine"``: a one-cycle rate, linear warm-up over ``warmup`` episodes to ``lr``,
            then a cosine decay to 0 at the last episode (``lr_step`` and ``lr_gamma`` unused).
        warmup: episodes of linear warm-up of the cosine schedule (``None``: none).
        head_lr_scale: the parameters outside the backbone (a relation module, a classifier
            head) learn at ``lr`` times this (``None``: 1), as when a new head is trained on a
            pre-trained backbone.
        augment: the name of the augmentation policy applied to training images (see
            ``datasets.augment.POLICIES``), or ``None`` for none; validation and test images
            are never augmented.
    """

    episodes: int = 1000
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    lr: float = 1e-3
    lr_step: int = 2000
    lr_gamma: float = 0.5
    grad_clip: float | None = None
    val_every: int = 250
    val_episodes: int = 100
    time_budget_s: float | None = None
    val_n_way: int | None = None
    val_n_query: int | None = None
    protocol: str | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup: int | None = None
    augment: str | None = None
    head_lr_scale: float | None = None

    # Fields added after records were first published: left out of a cell's configuration (and
    # so of its hash) while unset, so that existing records keep their identity.
    OPTIONAL_FIELDS = (
        "val_n_way",
        "val_n_query",
        "protocol",
        "batch_size",
        "optimizer",
        "momentum",
        "weight_decay",
        "schedule",
        "warmup",
        "augment",
        "head_lr_scale",
    )

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.lr_step < 1 or self.val_episodes < 1 or self.val_every < 0:
            raise ValueError(
                "TrainConfig needs episodes >= 0, lr_step >= 1, val_episodes >= 1, "
                f"val_every >= 0; got {self}"
            )
        if self.n_way < 2 or self.k_shot < 1 or self.n_query < 1:
            raise ValueError(
                f"TrainConfig needs n_way >= 2, k_shot >= 1 and n_query >= 1; got n_way="
                f"{self.n_way}, k_shot={self.k_shot}, n_query={self.n_query}"
            )
        for name in ("lr", "lr_gamma", "grad_clip", "head_lr_scale"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {value}")
        budget = self.time_budget_s
        if budget is not None and not (math.isfinite(budget) and budget >= 0):
            raise ValueError(
                f"TrainConfig.time_budget_s must be a finite number >= 0, got {budget}"
            )
        if (self.val_n_way is None) != (self.val_n_query is None):
            raise ValueError("TrainConfig: set both val_n_way and val_n_query, or neither")
        if (
            self.val_n_way is not None
            and self.val_n_query is not None
            and (self.val_n_way < 2 or self.val_n_query < 1)
        ):
            raise ValueError(f"TrainConfig needs val_n_way >= 2 and val_n_query >= 1; got {self}")

        if self.protocol not in (None, "classification"):
            raise ValueError(f"TrainConfig.protocol must be None or 'classification', got {self}")
        if (self.protocol == "classification") != (self.batch_size is not None):
            raise ValueError("TrainConfig: the classification protocol needs a batch_size")
        if self.batch_size is not None and self.batch_size < 2:
            raise ValueError(f"TrainConfig needs batch_size >= 2; got {self}")
        self._check_optimisation()

    def _check_optimisation(self) -> None:
        """The optimiser, schedule and augmentation fields name things that exist."""
        if self.optimizer not in (None, "sgd"):
            raise ValueError(f"TrainConfig.optimizer must be None (Adam) or 'sgd', got {self}")
        if self.schedule not in (None, "cosine"):
            raise ValueError(f"TrainConfig.schedule must be None (step) or 'cosine', got {self}")
        for name in ("momentum", "weight_decay", "warmup"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {value}")
        if self.augment is not None:
            from datasets.augment import POLICIES

            if self.augment not in POLICIES:
                raise ValueError(
                    f"TrainConfig.augment {self.augment!r} is not a known augmentation; "
                    f"valid: {', '.join(POLICIES)}"
                )

    @property
    def classification(self) -> bool:
        """Whether the model is trained as an ordinary classifier (not on episodes)."""
        return self.protocol == "classification"

    @property
    def validation_fixed(self) -> bool:
        """Whether validation episodes have their own shape (not the test setting's)."""
        return self.val_n_way is not None


@dataclass(frozen=True)
class Pretraining:
    """A shared pre-training stage: the backbone trained as an ordinary classifier over all the
    training classes (a linear layer on its flattened features, dropped afterwards), before a
    method's own training starts from its weights.

    One pre-trained backbone exists per (dataset and data read, split, backbone, seed, precision,
    device, this stage): every method whose recipe names the same stage starts from the same
    weights, trained once (see ``benchmarks.engine.pretraining``).

    Attributes:
        name: a readable name, shown in tables and records (e.g. ``"conv4-classifier-16ep"``).
        train: its training, with the classification protocol; validated on episodes by nearest
            centroids of L2-normalised features.
    """

    name: str
    train: TrainConfig

    def __post_init__(self) -> None:
        if not self.train.classification:
            raise ValueError(
                f"pre-training {self.name!r} must use the classification protocol "
                "(protocol='classification' and a batch_size)"
            )


@dataclass(frozen=True)
class Recipe:
    """How one method is built and trained for one test setting.

    Attributes:
        backbone: name of the embedding network (see ``methods.BACKBONE_NAMES``).
        options: the method's options.
        train: the training configuration (its way/shot/query describe training episodes).
        pretrain: the shared pre-training stage the backbone starts from, or ``None`` (a freshly
            initialised backbone).
    """

    backbone: str
    train: TrainConfig
    options: dict[str, Any] = field(default_factory=dict)
    pretrain: Pretraining | None = None


#: ``recipe(n_way, k_shot) -> Recipe``: a method's recipe for one preset and dataset family, by
#: the test setting it is trained for.
RecipeFunction = Callable[[int, int], Recipe]

#: Dataset families recipes are declared for (each dataset declares its family, see
#: ``datasets.registry.FAMILIES``).
CHARACTERS = "characters"
NATURAL_IMAGES = "natural-images"
#: The backbone key of a recipe made for whatever backbone ``--backbone`` names (its own
#: default backbone otherwise).
ANY_BACKBONE = "any"


@dataclass(frozen=True)
class RecipeEntry:
    """One row of a method's recipe table (like mmfewshot's ``metafile.yml``).

    Attributes:
        preset: the preset it belongs to (``"paper-cpu"``).
        family: the dataset family it is made for (:data:`CHARACTERS`, :data:`NATURAL_IMAGES`).
        backbone: the backbone it is made for, or :data:`ANY_BACKBONE`.
        make: ``make(n_way, k_shot) -> Recipe`` for a test setting.
        published: what the recipe aims at: ``{"dataset 5-way 1-shot": accuracy in %}``, as
            published in ``source``; empty when it aims at none.
        source: the publication of ``published``.
    """

    preset: str
    family: str
    backbone: str
    make: RecipeFunction
    published: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def key(self) -> str:
        """``preset/family/backbone``, as errors and listings name the entry."""
        return f"{self.preset}/{self.family}/{self.backbone}"


@dataclass(frozen=True)
class PublishedResult:
    """A published test accuracy of a method, as tables compare against it.

    Attributes:
        dataset, split: where it was measured (``"omniglot"``, ``"vinyals"``).
        n_way, k_shot: the test setting.
        accuracy: in percent.
        ci95: its 95% confidence half-width in points, when the source gives one.
        source: the publication, precise enough to find the number.
    """

    dataset: str
    split: str
    n_way: int
    k_shot: int
    accuracy: float
    ci95: float | None
    source: str


def aims(published: tuple[PublishedResult, ...], dataset: str) -> dict[str, float]:
    """What a recipe made to reproduce ``published`` on ``dataset`` aims at, as
    :attr:`RecipeEntry.published` holds it (``{"dataset N-way K-shot": accuracy}``)."""
    return {
        f"{r.dataset} {r.n_way}-way {r.k_shot}-shot": r.accuracy
        for r in published
        if r.dataset == dataset
    }


#: A method's recipes: one entry per (preset, family, backbone).
RecipeTable = tuple[RecipeEntry, ...]


def entries(
    preset: str, make: RecipeFunction, families: tuple[str, ...], backbone: str = ANY_BACKBONE
) -> RecipeTable:
    """The same recipe ``make`` declared for each of ``families``."""
    return tuple(RecipeEntry(preset, family, backbone, make) for family in families)


class MissingRecipeError(ValueError):
    """A method has no recipe for the (preset, family, backbone) asked for; the message lists
    the recipes it has."""


def find_recipe(
    table: RecipeTable, method: str, preset: str, family: str, backbone: str | None
) -> RecipeEntry:
    """The entry of ``table`` for ``preset`` and ``family``: the one made for ``backbone`` if
    there is one, else the one made for any backbone; with ``backbone=None`` (the recipe's own),
    the first entry of the preset and family.

    Raises:
        MissingRecipeError: no entry fits; the message lists the entries there are.
    """
    fitting = [e for e in table if e.preset == preset and e.family == family]
    exact = [e for e in fitting if backbone is None or e.backbone == backbone]
    general = [e for e in fitting if e.backbone == ANY_BACKBONE]
    if exact or general:
        return (exact or general)[0]
    asked = f"{preset}/{family}/{backbone or '(its own backbone)'}"
    have = ", ".join(e.key for e in table) or "none"
    raise MissingRecipeError(
        f"method {method!r} has no recipe for {asked} (preset/dataset family/backbone); its "
        f"recipes: {have}. Choose one of those, or declare one in the method's recipe table"
    )


#: Matching Networks' options in the recipes that aim at the published numbers: the cosine
#: similarities are scaled by a learned temperature (Oreshkin et al., NeurIPS 2018) instead of
#: a fixed one.
MATCHNET_LEARNED_SCALE: dict[str, Any] = {"learn_temperature": True}

#: Validation of the ``paper-cpu`` recipes: fixed 20-way episodes of the training shot, so one
#: model serves the 5-way and the 20-way test; Adam's rate halved every 2,000 episodes.
PAPER_CPU_VALIDATION: dict[str, Any] = {
    "lr_step": 2000,
    "val_every": 1000,
    "val_episodes": 200,
    "val_n_way": 20,
    "val_n_query": 5,
}


def quick_recipe(backbone: str) -> RecipeFunction:
    """The ``quick`` preset on ``backbone``: sized for a 2-core CPU, 1,000 training episodes of
    20 ways and 5 queries per class.

    Wide training episodes give many negative pairs per step, which is what lets every method
    (the Relation Network most of all) reach useful accuracy within 1,000 steps.
    """

    def recipe(n_way: int, k_shot: int) -> Recipe:
        return Recipe(
            backbone=backbone,
            train=TrainConfig(
                episodes=1000,
                n_way=20,
                k_shot=k_shot,
                n_query=5,
                lr_step=500,
                val_every=250,
                val_episodes=100,
            ),
        )

    return recipe


def paper_cpu_recipe(backbone: str, options: dict[str, Any] | None = None) -> RecipeFunction:
    """The ``paper-cpu`` recipe of a method without one of its own: 20-way episodes of the test
    shot, 5 queries, the rate halved every 3,000 episodes; 12,000 / 10,000 episodes at 1 / 5
    shots."""

    def recipe(n_way: int, k_shot: int) -> Recipe:
        train = TrainConfig(
            episodes=12000 if k_shot == 1 else 10000,
            n_way=20,
            k_shot=k_shot,
            n_query=5,
            **{**PAPER_CPU_VALIDATION, "lr_step": 3000},
        )
        return Recipe(backbone=backbone, train=train, options=dict(options or {}))

    return recipe


#: Validation of the miniImageNet recipes: 5-way episodes of the training shot, 15 queries
#: (the 16 validation classes cannot give the 20-way episodes of the Omniglot recipes).
MINI_IMAGENET_VALIDATION: dict[str, Any] = {"val_n_way": 5, "val_n_query": 15}


def mini_imagenet_cpu_train(
    k_shot: int, n_query: int = 15, episodes: int | None = None
) -> TrainConfig:
    """The ``paper-cpu`` training on miniImageNet: 5-way episodes of the test shot (the
    published 5-way training, shortened), by default 5,000 / 4,000 episodes at 1 / 5 shots
    (ProtoNet at 5 shots: 75 min on a 2-core CPU, 2.5 core-hours, while other work shared it), Adam's rate halved every 1,500
    episodes, validated every 500 episodes on 100 episodes; the best validated weights are
    kept."""
    return TrainConfig(
        episodes=episodes if episodes is not None else (5000 if k_shot == 1 else 4000),
        n_way=5,
        k_shot=k_shot,
        n_query=n_query,
        lr_step=1500,
        val_every=500,
        val_episodes=100,
        **MINI_IMAGENET_VALIDATION,
    )


#: The shared pre-training of the ``pretrained-cpu`` preset on natural images: Conv-4 trained
#: as a classifier over all training classes (miniImageNet: 64), batches of 128 images
#: augmented by random crops of 8-pixel zero padding and flips, SGD with Nesterov momentum
#: 0.9 and weight decay 5e-4, a one-cycle rate (300 steps of warm-up to 0.1, cosine decay to 0)
#: over 4,800 steps (16 epochs of miniImageNet's 38,400 training images); validated every 600
#: steps on 100 5-way 1-shot episodes scored by nearest centroids of L2-normalised features.
NATURAL_PRETRAINING = Pretraining(
    name="conv4-classifier-crop-flip-16ep",
    train=TrainConfig(
        episodes=4800,
        n_way=5,
        k_shot=1,
        n_query=15,
        lr=0.1,
        val_every=600,
        val_episodes=100,
        val_n_way=5,
        val_n_query=15,
        protocol="classification",
        batch_size=128,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup=300,
        augment="crop-flip",
    ),
)


def pretrained_meta_train(
    k_shot: int, episodes: int, n_query: int = 15, lr: float = 1e-3
) -> TrainConfig:
    """Episodic training from the shared pre-trained backbone on natural images: 5-way episodes
    of the test shot, crop-and-flip augmentation, SGD (Nesterov momentum 0.9, weight decay 5e-4)
    at ``lr`` decayed by a cosine to 0, validated every 250 episodes on 100 5-way episodes of
    the training shot; the best validated weights are kept."""
    return TrainConfig(
        episodes=episodes,
        n_way=5,
        k_shot=k_shot,
        n_query=n_query,
        lr=lr,
        val_every=250,
        val_episodes=100,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        augment="crop-flip",
        **MINI_IMAGENET_VALIDATION,
    )
