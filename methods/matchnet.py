"""Matching Networks (Vinyals et al., NeurIPS 2016), the cosine-attention baseline."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FewShotMethod, MethodOptions, bounded, class_one_hot
from .recipes import (
    ANY_BACKBONE,
    CHARACTERS,
    MATCHNET_LEARNED_SCALE,
    MINI_IMAGENET_VALIDATION,
    NATURAL_IMAGES,
    NATURAL_PRETRAINING,
    PublishedResult,
    Recipe,
    RecipeEntry,
    RecipeTable,
    TrainConfig,
    aims,
    entries,
    mini_imagenet_cpu_train,
    paper_cpu_recipe,
    pretrained_meta_train,
    quick_recipe,
)
from .registry import register_method


@dataclasses.dataclass(frozen=True)
class MatchingNetOptions(MethodOptions):
    """Options of :class:`MatchingNet`.

    Attributes:
        temperature: scale (> 0) of the similarities before the softmax. Cosines lie in [-1, 1]
            (in [0, 1] after a ReLU backbone), so an unscaled softmax is nearly uniform and
            learns slowly.
        learn_temperature: train the temperature (kept positive, starting at ``temperature``)
            together with the network, the metric scaling of Oreshkin et al. (NeurIPS 2018).
        similarity: ``"cosine"`` normalises query and support embeddings (Vinyals et al.'s
            cosine); ``"support-normalized"`` normalises only the support embeddings, so the
            query's norm acts as a learned per-query sharpness, as in widely used
            re-implementations of Matching Networks (use it with ``temperature=1``).
        fce: full context embeddings: a bidirectional LSTM over the support set and an
            attention LSTM over the queries, sized by the flattened feature map (``D*h*w``:
            64 on 28x28 Omniglot, 1,600 on 84x84 miniImageNet; ``D`` when the backbone does not
            know its input size).
        fce_steps: processing steps of the attention LSTM (at least 1).
    """

    method_name: ClassVar[str] = "matchnet"

    temperature: float = bounded(10.0, gt=0)
    learn_temperature: bool = False
    similarity: Literal["cosine", "support-normalized"] = "cosine"
    fce: bool = False
    fce_steps: int = bounded(5, ge=1)


class FullContextEmbedding(nn.Module):
    """Vinyals et al.'s g (bidirectional LSTM) and f (attention LSTM) over flat embeddings.

    Shapes: ``forward(support [S, D], query [Q, D]) -> ([S, D], [Q, D])``.
    """

    def __init__(self, dim: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_cell = nn.LSTMCell(dim, dim)

    def forward(self, support: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        both, _ = self.support_lstm(support.unsqueeze(0))  # [1, S, 2D]
        forward_half, backward_half = both.squeeze(0).chunk(2, dim=-1)
        g = support + forward_half + backward_half
        h = query
        c = torch.zeros_like(query)
        for _ in range(self.steps):
            attention = torch.softmax(h @ g.T, dim=1)  # [Q, S]
            read = attention @ g
            h_hat, c = self.query_cell(query, (h + read, c))
            h = h_hat + query
        return g, h


def _paper_characters(n_way: int, k_shot: int) -> Recipe:
    """Vinyals et al. 2016 on Omniglot: cosine attention, trained on episodes of the test shape;
    the scale of the cosines is learned (see the paper-cpu recipe); meant for a GPU."""
    return Recipe(
        backbone="conv4",
        options=dict(MATCHNET_LEARNED_SCALE),
        train=TrainConfig(
            episodes=20_000,
            n_way=n_way,
            k_shot=k_shot,
            n_query=15 if n_way == 5 else 5,
            lr_step=2000,
            val_every=1000,
            val_episodes=300,
        ),
    )


def _paper_natural(n_way: int, k_shot: int) -> Recipe:
    """Vinyals et al. 2016 on miniImageNet: 5-way training with full context embeddings as
    re-run by Ravi & Larochelle 2017; meant for a GPU."""
    train = TrainConfig(
        episodes=20_000,
        n_way=5,
        k_shot=k_shot,
        n_query=15,
        lr_step=2000,
        val_every=1000,
        val_episodes=300,
        **MINI_IMAGENET_VALIDATION,
    )
    return Recipe(backbone="conv4", train=train, options=dict(MINI_IMAGENET_MATCHNET))


#: Matching Networks on miniImageNet: full context embeddings (Ravi & Larochelle's re-run used
#: them) and the learned scale of the Omniglot recipes.
MINI_IMAGENET_MATCHNET: dict[str, Any] = {**MATCHNET_LEARNED_SCALE, "fce": True}


def _paper_cpu_natural(n_way: int, k_shot: int) -> Recipe:
    """5-way training with full context embeddings, shortened (see
    :func:`~methods.recipes.mini_imagenet_cpu_train`) to 2,000 episodes: the LSTMs over 1,600
    features (61M parameters) make a step about 2.5 times as costly as ProtoNet's, and this
    keeps a model within about 2 core-hours."""
    return Recipe(
        backbone="conv4",
        train=mini_imagenet_cpu_train(k_shot, episodes=2000),
        options=dict(MINI_IMAGENET_MATCHNET),
    )


def _pretrained_cpu(n_way: int, k_shot: int) -> Recipe:
    """From the shared pre-trained Conv-4 (:data:`~methods.recipes.NATURAL_PRETRAINING`):
    5-way episodes of the test shot, 15 queries, cosine attention with the learned scale and no
    full context embeddings (their LSTMs over 1,600 features would add 61M parameters trained
    from scratch on top of a trained embedding), SGD with a cosine decay from 1e-3,
    crop-and-flip augmentation."""
    return Recipe(
        backbone="conv4",
        train=pretrained_meta_train(k_shot, episodes=1500),
        options=dict(MATCHNET_LEARNED_SCALE),
        pretrain=NATURAL_PRETRAINING,
    )


#: Matching Networks on miniImageNet as Ravi & Larochelle 2017 re-ran them (with FCE), in %.
_MATCHNET = (
    "Vinyals et al., Matching Networks for One Shot Learning, NeurIPS 2016, Table 1 "
    "(cosine, no fine-tuning)"
)
_MATCHNET_MINI = (
    "Ravi & Larochelle, Optimization as a Model for Few-Shot Learning, ICLR 2017, Table 1 "
    "(Matching Networks with FCE, their re-run)"
)
#: Vinyals et al.'s Omniglot accuracies and Ravi & Larochelle's miniImageNet re-run.
PUBLISHED = (
    PublishedResult("omniglot", "vinyals", 5, 1, 98.1, None, _MATCHNET),
    PublishedResult("omniglot", "vinyals", 5, 5, 98.9, None, _MATCHNET),
    PublishedResult("omniglot", "vinyals", 20, 1, 93.8, None, _MATCHNET),
    PublishedResult("omniglot", "vinyals", 20, 5, 98.5, None, _MATCHNET),
    PublishedResult("mini-imagenet", "standard", 5, 1, 43.56, 0.84, _MATCHNET_MINI),
    PublishedResult("mini-imagenet", "standard", 5, 5, 55.31, 0.73, _MATCHNET_MINI),
)
MINI_PUBLISHED = aims(PUBLISHED, "mini-imagenet")


@register_method
class MatchingNet(FewShotMethod):
    """Matching Networks: softmax attention over cosine similarities, summed per class.

    With ``learn_temperature`` the method has one parameter outside the backbone (the log of
    the temperature).
    """

    name = "matchnet"
    Options = MatchingNetOptions
    options: MatchingNetOptions
    #: paper-cpu: 20-way episodes of the test shot, 12,000 / 10,000 episodes at 1 / 5 shots,
    #: with the learned scale. With the scale fixed at 10 the same training stays 1.9-2.4 points
    #: under the published 20-way numbers (CPU and GPU runs, see docs/reproducing.md).
    published: ClassVar[tuple[PublishedResult, ...]] = PUBLISHED
    recipes: ClassVar[RecipeTable] = (
        *entries("quick", quick_recipe("conv4"), (CHARACTERS, NATURAL_IMAGES)),
        RecipeEntry("paper", CHARACTERS, ANY_BACKBONE, _paper_characters),
        RecipeEntry(
            "paper", NATURAL_IMAGES, "conv4", _paper_natural, MINI_PUBLISHED, _MATCHNET_MINI
        ),
        RecipeEntry(
            "paper-cpu",
            CHARACTERS,
            ANY_BACKBONE,
            paper_cpu_recipe("conv4", MATCHNET_LEARNED_SCALE),
        ),
        RecipeEntry(
            "paper-cpu", NATURAL_IMAGES, "conv4", _paper_cpu_natural, MINI_PUBLISHED, _MATCHNET_MINI
        ),
        RecipeEntry(
            "pretrained-cpu",
            NATURAL_IMAGES,
            "conv4",
            _pretrained_cpu,
            MINI_PUBLISHED,
            _MATCHNET_MINI,
        ),
    )

    def __init__(self, backbone: nn.Module, options: MatchingNetOptions | None = None) -> None:
        super().__init__(backbone, options)
        opts = self.options
        log_temperature = torch.tensor(math.log(opts.temperature))
        if opts.learn_temperature:
            self.log_temperature = nn.Parameter(log_temperature)
        else:
            self.register_buffer("log_temperature", log_temperature, persistent=False)
        self.context = None
        if opts.fce:
            shape = self.feature_shape  # the LSTMs see flattened feature maps
            dim = shape[0] * shape[1] * shape[2] if shape is not None else self.feature_channels
            self.context = FullContextEmbedding(dim, opts.fce_steps)

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        """Class probabilities ``[Q, N]`` (each row sums to 1)."""
        s, q = support.flatten(1), query.flatten(1)
        if self.context is not None:
            expected = self.context.query_cell.input_size
            if s.shape[1] != expected:
                raise ValueError(
                    f"matchnet's full context embedding was sized for {expected} features per "
                    f"image but got {s.shape[1]}: build the backbone with its image size "
                    "(Conv4(..., image_size=S)) so the LSTMs are sized by the flattened map"
                )
            s, q = self.context(s, q)
        if self.options.similarity == "cosine":
            q = F.normalize(q, dim=1)
        similarity = q @ F.normalize(s, dim=1).T  # [Q, S]
        attention = torch.softmax(self.log_temperature.exp() * similarity, dim=1)
        return attention @ class_one_hot(support_y, n_way, attention.dtype)

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        return F.nll_loss(torch.log(scores.clamp_min(1e-12)), query_y)
