"""Relation Network (Sung et al., CVPR 2018): a learned metric scoring (class, query) pairs."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import folded_batch_norm
from .base import FewShotMethod, MethodOptions, bounded, class_means, class_sums
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


@dataclasses.dataclass(frozen=True)
class RelationNetOptions(MethodOptions):
    """Options of :class:`RelationNet`.

    Attributes:
        relation: ``"conv"``, the paper's module (two conv blocks on channel-wise concatenated
            feature maps, FC to ``fc_hidden``, FC to 1), or ``"mlp"`` (fully connected layers
            of ``mlp_hidden`` units on concatenated globally pooled feature vectors).
        aggregate: how the K support samples of a class are combined: ``"sum"`` (the paper) or
            ``"mean"`` of their feature maps, or ``"score-mean"``, the mean of the K relation
            scores of the query against each sample.
        loss: ``"mse"`` of the sigmoid scores against one-hot targets (the paper), or ``"ce"``,
            cross-entropy over the relation logits.
        fc_hidden: hidden units (>= 1) of the conv module's first FC layer (8 in the paper).
        mlp_hidden: hidden units (>= 1) of each layer of the MLP module.
        relation_layout: the conv module's layout. ``"padded"``: padded convolutions, and the
            map left after the second block (1x1 on Omniglot) is averaged before the FC layers
            (the paper's Omniglot module). ``"unpadded"``: unpadded convolutions, each block
            pooled, the map flattened into the first FC layer (the paper's miniImageNet module:
            64x19x19 -> 64x8x8 -> 64x3x3 -> FC 8 -> FC 1); needs a backbone that knows its image
            size.
        pairwise: ``"factorized"`` computes the first (linear) layer once per class and once
            per query and adds the halves for every pair; ``"naive"`` concatenates every pair
            first. Both give the same scores up to float rounding.
    """

    method_name: ClassVar[str] = "relnet"

    relation: Literal["conv", "mlp"] = "conv"
    aggregate: Literal["sum", "mean", "score-mean"] = "sum"
    loss: Literal["mse", "ce"] = "mse"
    fc_hidden: int = bounded(8, ge=1)
    mlp_hidden: int = bounded(256, ge=1)
    relation_layout: Literal["padded", "unpadded"] = "padded"
    pairwise: Literal["factorized", "naive"] = "factorized"


def _pool_if_possible(maps: Tensor) -> Tensor:
    """2x2 max-pool, skipped when the map is already smaller than 2x2 (1x1 features)."""
    if maps.shape[-1] >= 2 and maps.shape[-2] >= 2:
        return F.max_pool2d(maps, 2)
    return maps


class ConvRelation(nn.Module):
    """The paper's relation module: two conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max-pool)
    on channel-wise concatenated (class, query) maps, FC to ``fc_hidden``, ReLU, FC to 1.

    With ``padding=1`` and ``flat_size=None`` it works on maps of any size, 1x1 included (what
    is left after the blocks is averaged); with ``flat_size`` set, the map after the blocks is
    flattened into the first FC layer, which then expects exactly ``flat_size`` inputs (see
    :func:`relation_flat_size`).

    Shapes: ``pair_logits(classes [N, D, h, w], queries [Q, D, h, w]) -> [Q, N]``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 64,
        fc_hidden: int = 8,
        padding: int = 1,
        flat_size: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.padding = padding
        self.flatten = flat_size is not None
        self.first = nn.Conv2d(2 * in_channels, channels, 3, padding=padding)
        self.first_norm = nn.BatchNorm2d(channels)
        self.second = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=padding),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        head_in = flat_size if flat_size is not None else channels
        self.head = nn.Sequential(nn.Linear(head_in, fc_hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(fc_hidden, 1)

    def pair_logits(self, classes: Tensor, queries: Tensor, factorized: bool = True) -> Tensor:
        n, q = len(classes), len(queries)
        if not factorized:
            pairs = torch.cat(
                [
                    classes.unsqueeze(0).expand(q, *classes.shape),
                    queries.unsqueeze(1).expand(q, n, *queries.shape[1:]),
                ],
                dim=2,
            ).flatten(0, 1)
            return self.after_first(self.first(pairs)).view(q, n)
        # conv([class ; query]) = conv(class, W_class) + conv(query, W_query): each half once.
        weight_class, weight_query = self.first.weight.split(self.in_channels, dim=1)
        pad = self.padding
        class_half = F.conv2d(classes, weight_class, self.first.bias, padding=pad)  # [N, C, h, w]
        query_half = F.conv2d(queries, weight_query, None, padding=pad)  # [Q, C, h, w]
        if self.first_norm.training:
            # batch statistics are taken over every pair and position: build all of them
            first = (query_half.unsqueeze(1) + class_half.unsqueeze(0)).flatten(0, 1)
            return self.after_first(first).view(q, n)
        # With running statistics the normalisation is affine and folds into the halves, and a
        # floor-mode 2x2 pool never reads an odd last row or column, so pairs skip both.
        scale, shift = (v.view(-1, 1, 1) for v in folded_batch_norm(self.first_norm))
        class_half = class_half * scale + shift
        query_half = query_half * scale
        h, w = class_half.shape[-2:]
        if h >= 2 and w >= 2:
            class_half = class_half[..., : h - h % 2, : w - w % 2]
            query_half = query_half[..., : h - h % 2, : w - w % 2]
        maps = torch.relu_(query_half.unsqueeze(1) + class_half.unsqueeze(0)).flatten(0, 1)
        return self.after_first_block(_pool_if_possible(maps)).view(q, n)

    def after_first(self, first: Tensor) -> Tensor:
        """Logits ``[P]`` of ``P`` pairs from the first convolution's output ``[P, C, h, w]``."""
        return self.after_first_block(_pool_if_possible(F.relu(self.first_norm(first))))

    def after_first_block(self, maps: Tensor) -> Tensor:
        """Logits ``[P]`` from the first block's pooled output ``[P, C, h', w']``."""
        maps = _pool_if_possible(self.second(maps))
        # flattened (miniImageNet module), or averaged: identity on the paper's 1x1 maps
        reduced = maps.flatten(1) if self.flatten else maps.mean(dim=(-2, -1))
        return self.out(self.head(reduced)).squeeze(-1)


def relation_flat_size(feature_shape: tuple[int, int, int], channels: int, padding: int) -> int:
    """Inputs of the first FC layer of a flattening :class:`ConvRelation` on feature maps
    ``(D, h, w)``: ``channels`` times the map left after two blocks of 3x3 convolution
    (``padding``) and 2x2 max-pool (64x19x19 -> 64x3x3 unpadded: 576)."""
    _, h, w = feature_shape
    for _ in range(2):
        h, w = h + 2 * padding - 2, w + 2 * padding - 2
        if h < 1 or w < 1:
            raise ValueError(
                f"feature maps of shape {feature_shape} are too small for the relation module's "
                f"convolutions (padding {padding}); use relation_layout='padded'"
            )
        if h >= 2 and w >= 2:
            h, w = h // 2, w // 2
    return channels * h * w


class MlpRelation(nn.Module):
    """Fully connected relation module on concatenated, globally pooled feature vectors.

    Shapes: ``pair_logits(classes [N, D, h, w], queries [Q, D, h, w]) -> [Q, N]``.
    """

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.first = nn.Linear(2 * in_channels, hidden)
        self.rest = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def pair_logits(self, classes: Tensor, queries: Tensor, factorized: bool = True) -> Tensor:
        c, x = classes.mean(dim=(-2, -1)), queries.mean(dim=(-2, -1))  # [N, D], [Q, D]
        n, q = len(c), len(x)
        if factorized:
            weight_class, weight_query = self.first.weight.split(self.in_channels, dim=1)
            first = (x @ weight_query.T).unsqueeze(1) + (c @ weight_class.T + self.first.bias)
            first = first.flatten(0, 1)
        else:
            pairs = torch.cat(
                [c.unsqueeze(0).expand(q, n, -1), x.unsqueeze(1).expand(q, n, -1)], dim=2
            )
            first = self.first(pairs.flatten(0, 1))
        return self.rest(first).view(q, n)


#: Channels of the relation module's convolutions: the paper's 64, whatever the backbone's
#: width (on ResNet-12's 640 channels the first convolution maps 1,280 to 64).
RELATION_CHANNELS = 64

#: The relation module of Sung et al.'s miniImageNet network (64x19x19 maps -> 64x3x3 -> FC 8).
MINI_IMAGENET_RELATION = {"relation_layout": "unpadded"}


def _paper_characters(n_way: int, k_shot: int) -> Recipe:
    """Sung et al. 2018 on Omniglot: queries per class by setting, Adam 1e-3 halved every 100k
    episodes, 1M episodes; meant for a GPU."""
    queries = {(5, 1): 19, (5, 5): 15, (20, 1): 10, (20, 5): 5}.get((n_way, k_shot), 10)
    return Recipe(
        backbone="conv4-relnet",
        train=TrainConfig(
            episodes=1_000_000,
            n_way=n_way,
            k_shot=k_shot,
            n_query=queries,
            lr_step=100_000,
            val_every=5000,
            val_episodes=300,
        ),
    )


def _paper_natural(n_way: int, k_shot: int) -> Recipe:
    """Sung et al. 2018 on miniImageNet: 5-way, 15 / 10 queries at 1 / 5 shots, Adam 1e-3 halved
    every 100k episodes, 500k episodes, the unpadded relation module; meant for a GPU."""
    train = TrainConfig(
        episodes=500_000,
        n_way=5,
        k_shot=k_shot,
        n_query=15 if k_shot == 1 else 10,
        lr_step=100_000,
        val_every=5000,
        val_episodes=300,
        **MINI_IMAGENET_VALIDATION,
    )
    return Recipe(backbone="conv4-relnet", train=train, options=dict(MINI_IMAGENET_RELATION))


def _paper_cpu_characters(n_way: int, k_shot: int) -> Recipe:
    """Sung et al.'s 20-way recipe shortened for a CPU (10 queries per class at 1 shot, 5 at 5
    shots), paper embedding layout, sum of support maps, sigmoid + MSE: 4,000 episodes at 5
    shots; at 1 shot, where it converges slowest, 15,000 episodes with the rate halved every
    3,000 (8,000 episodes halved every 2,000 left it 0.2 / 0.6 points short at 5- / 20-way)."""
    if k_shot == 1:
        train = TrainConfig(
            episodes=15000,
            n_way=20,
            k_shot=1,
            n_query=10,
            **{**PAPER_CPU_VALIDATION, "lr_step": 3000},
        )
    else:
        train = TrainConfig(
            episodes=4000, n_way=20, k_shot=k_shot, n_query=5, **PAPER_CPU_VALIDATION
        )
    return Recipe(backbone="conv4-relnet", train=train)


def _paper_cpu_natural(n_way: int, k_shot: int) -> Recipe:
    """The paper's 5-way training and relation module on natural images, shortened (see
    :func:`~methods.recipes.mini_imagenet_cpu_train`)."""
    train = mini_imagenet_cpu_train(k_shot, n_query=15 if k_shot == 1 else 10)
    return Recipe(backbone="conv4-relnet", train=train, options=dict(MINI_IMAGENET_RELATION))


def _pretrained_cpu(n_way: int, k_shot: int) -> Recipe:
    """From the shared pre-trained Conv-4 (:data:`~methods.recipes.NATURAL_PRETRAINING`, 64x5x5
    maps on 84x84 images, so the padded relation module of the Omniglot network): the paper's
    5-way episodes (15 / 10 queries at 1 / 5 shots), sum of support maps, sigmoid + MSE, 3,000 /
    4,000 episodes (2,000 at 5 shots left validation rising until the rate reached 0: 59.4,
    60.3, 60.4, 60.9, 60.9% at episodes 1,000-2,000, test 62.02%); the paper's Adam, at 1e-4 for the pre-trained backbone and 1e-3 for the new
    relation module (``head_lr_scale=10``), with a cosine decay; crop-and-flip augmentation.
    (300-episode pilots at 1 shot, 200 test episodes: SGD 1e-3 for both 21.8%, the module does
    not learn; Adam 1e-3 for both 39.3%; Adam 1e-4 for both 29.8%; SGD 0.01 with the module at
    0.1 42.6%; this recipe 44.5%.)"""
    train = pretrained_meta_train(
        k_shot, episodes=3000 if k_shot == 1 else 4000, n_query=15 if k_shot == 1 else 10
    )
    train = dataclasses.replace(
        train, optimizer=None, momentum=None, weight_decay=None, lr=1e-4, head_lr_scale=10.0
    )
    return Recipe(backbone="conv4", train=train, pretrain=NATURAL_PRETRAINING)


#: Sung et al. 2018's miniImageNet results (5-way test), in %.
_RELNET = (
    "Sung et al., Learning to Compare: Relation Network for Few-Shot Learning, CVPR 2018, Table 1"
)
_RELNET_MINI = (
    "Sung et al., Learning to Compare, CVPR 2018, Table 2 (their miniImageNet relation module)"
)
#: The accuracies of Sung et al.'s paper (Omniglot, Vinyals split; miniImageNet, Ravi & Larochelle).
PUBLISHED = (
    PublishedResult("omniglot", "vinyals", 5, 1, 99.6, 0.2, _RELNET),
    PublishedResult("omniglot", "vinyals", 5, 5, 99.8, 0.1, _RELNET),
    PublishedResult("omniglot", "vinyals", 20, 1, 97.6, 0.2, _RELNET),
    PublishedResult("omniglot", "vinyals", 20, 5, 99.1, 0.1, _RELNET),
    PublishedResult("mini-imagenet", "standard", 5, 1, 50.44, 0.82, _RELNET_MINI),
    PublishedResult("mini-imagenet", "standard", 5, 5, 65.32, 0.70, _RELNET_MINI),
)
MINI_PUBLISHED = aims(PUBLISHED, "mini-imagenet")


@register_method
class RelationNet(FewShotMethod):
    """Relation Network: sigmoid relation scores of (class, query) pairs from a learned module."""

    name = "relnet"
    Options = RelationNetOptions
    options: RelationNetOptions
    #: The quick recipe keeps the paper's embedding layout (64x5x5 maps on 28x28 input).
    published: ClassVar[tuple[PublishedResult, ...]] = PUBLISHED
    recipes: ClassVar[RecipeTable] = (
        *entries("quick", quick_recipe("conv4-relnet"), (CHARACTERS, NATURAL_IMAGES)),
        RecipeEntry("paper", CHARACTERS, ANY_BACKBONE, _paper_characters),
        RecipeEntry(
            "paper", NATURAL_IMAGES, "conv4-relnet", _paper_natural, MINI_PUBLISHED, _RELNET_MINI
        ),
        RecipeEntry("paper-cpu", CHARACTERS, ANY_BACKBONE, _paper_cpu_characters),
        RecipeEntry(
            "paper-cpu",
            NATURAL_IMAGES,
            "conv4-relnet",
            _paper_cpu_natural,
            MINI_PUBLISHED,
            _RELNET_MINI,
        ),
        RecipeEntry(
            "pretrained-cpu", NATURAL_IMAGES, "conv4", _pretrained_cpu, MINI_PUBLISHED, _RELNET_MINI
        ),
    )

    @classmethod
    def options_for_backbone(cls, options: dict[str, Any], backbone: str) -> dict[str, Any]:
        """The paper's miniImageNet module (``relation_layout='unpadded'``) is made for Conv-4's
        64x19x19 maps; on another backbone (the ResNets' pooled 1x1 maps) the recipe falls back
        to the padded module."""
        if backbone.startswith("conv4") or options.get("relation_layout") != "unpadded":
            return options
        return {k: v for k, v in options.items() if k != "relation_layout"}

    def __init__(self, backbone: nn.Module, options: RelationNetOptions | None = None) -> None:
        super().__init__(backbone, options)
        opts = self.options
        channels = self.feature_channels
        self.relation: ConvRelation | MlpRelation
        if opts.relation == "conv" and opts.relation_layout == "unpadded":
            shape = self.feature_shape
            if shape is None:
                raise ValueError(
                    "relnet relation_layout='unpadded' sizes its FC layer by the feature map: "
                    "build the backbone with its image size (Conv4(..., image_size=S))"
                )
            flat = relation_flat_size(shape, RELATION_CHANNELS, padding=0)
            self.relation = ConvRelation(channels, RELATION_CHANNELS, opts.fc_hidden, 0, flat)
        elif opts.relation == "conv":
            self.relation = ConvRelation(channels, RELATION_CHANNELS, opts.fc_hidden)
        else:
            self.relation = MlpRelation(channels, opts.mlp_hidden)

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        opts = self.options
        factorized = opts.pairwise == "factorized"
        if opts.aggregate == "score-mean":
            per_sample = torch.sigmoid(self.relation.pair_logits(support, query, factorized))
            return class_means(per_sample.T, support_y, n_way).T  # [Q, N]
        reduce = class_sums if opts.aggregate == "sum" else class_means
        classes = reduce(support, support_y, n_way)  # [N, D, h, w]
        return torch.sigmoid(self.relation.pair_logits(classes, query, factorized))

    @classmethod
    def chance_loss(cls, n_way: int, options: MethodOptions) -> float:
        """MSE: answering 1/N for every pair scores (1/N)(1 - 1/N); cross-entropy: ln N."""
        if isinstance(options, RelationNetOptions) and options.loss == "mse":
            return (1 / n_way) * (1 - 1 / n_way)
        return super().chance_loss(n_way, options)

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        if self.options.loss == "mse":
            targets = F.one_hot(query_y, scores.shape[1]).to(scores.dtype)
            return F.mse_loss(scores, targets)
        return F.cross_entropy(torch.logit(scores, eps=1e-6), query_y)
