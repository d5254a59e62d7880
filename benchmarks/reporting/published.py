"""Published accuracies of the three methods (Omniglot, Vinyals split; miniImageNet, Ravi &
Larochelle split) and of Chen et al.'s classification baselines (miniImageNet), with their
sources, and the numbers of re-implementations users compare against (Chen et al. 2019,
mmfewshot) on miniImageNet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """A published test accuracy in percent, its 95% CI half-width when given, and the source."""

    accuracy: float
    ci95: float | None
    source: str


_RELNET = (
    "Sung et al., Learning to Compare: Relation Network for Few-Shot Learning, CVPR 2018, Table 1"
)
_PROTONET = "Snell et al., Prototypical Networks for Few-shot Learning, NeurIPS 2017, Table 1"
_MATCHNET = (
    "Vinyals et al., Matching Networks for One Shot Learning, NeurIPS 2016, Table 1 "
    "(cosine, no fine-tuning)"
)

_RELNET_MINI = (
    "Sung et al., Learning to Compare, CVPR 2018, Table 2 (their miniImageNet relation module)"
)
_PROTONET_MINI = (
    "Snell et al., Prototypical Networks, NeurIPS 2017, Table 2 (Euclidean, 30-/20-way training)"
)
_MATCHNET_MINI = (
    "Ravi & Larochelle, Optimization as a Model for Few-Shot Learning, ICLR 2017, Table 1 "
    "(Matching Networks with FCE, their re-run)"
)
_CHEN_MINI = (
    "Chen et al., A Closer Look at Few-shot Classification, ICLR 2019, Table A5 (Conv-4, with "
    "data augmentation, 400 epochs of classification training)"
)

#: (method, dataset, split, n_way, k_shot) -> published result.
PUBLISHED: dict[tuple[str, str, str, int, int], Published] = {
    ("relnet", "omniglot", "vinyals", 5, 1): Published(99.6, 0.2, _RELNET),
    ("relnet", "omniglot", "vinyals", 5, 5): Published(99.8, 0.1, _RELNET),
    ("relnet", "omniglot", "vinyals", 20, 1): Published(97.6, 0.2, _RELNET),
    ("relnet", "omniglot", "vinyals", 20, 5): Published(99.1, 0.1, _RELNET),
    ("protonet", "omniglot", "vinyals", 5, 1): Published(98.8, None, _PROTONET),
    ("protonet", "omniglot", "vinyals", 5, 5): Published(99.7, None, _PROTONET),
    ("protonet", "omniglot", "vinyals", 20, 1): Published(96.0, None, _PROTONET),
    ("protonet", "omniglot", "vinyals", 20, 5): Published(98.9, None, _PROTONET),
    ("matchnet", "omniglot", "vinyals", 5, 1): Published(98.1, None, _MATCHNET),
    ("matchnet", "omniglot", "vinyals", 5, 5): Published(98.9, None, _MATCHNET),
    ("matchnet", "omniglot", "vinyals", 20, 1): Published(93.8, None, _MATCHNET),
    ("matchnet", "omniglot", "vinyals", 20, 5): Published(98.5, None, _MATCHNET),
    ("relnet", "mini-imagenet", "standard", 5, 1): Published(50.44, 0.82, _RELNET_MINI),
    ("relnet", "mini-imagenet", "standard", 5, 5): Published(65.32, 0.70, _RELNET_MINI),
    ("protonet", "mini-imagenet", "standard", 5, 1): Published(49.42, 0.78, _PROTONET_MINI),
    ("protonet", "mini-imagenet", "standard", 5, 5): Published(68.20, 0.66, _PROTONET_MINI),
    ("matchnet", "mini-imagenet", "standard", 5, 1): Published(43.56, 0.84, _MATCHNET_MINI),
    ("matchnet", "mini-imagenet", "standard", 5, 5): Published(55.31, 0.73, _MATCHNET_MINI),
    ("baseline", "mini-imagenet", "standard", 5, 1): Published(42.11, None, _CHEN_MINI),
    ("baseline", "mini-imagenet", "standard", 5, 5): Published(62.53, None, _CHEN_MINI),
    ("baselinepp", "mini-imagenet", "standard", 5, 1): Published(48.24, None, _CHEN_MINI),
    ("baselinepp", "mini-imagenet", "standard", 5, 5): Published(66.43, None, _CHEN_MINI),
}


def tolerance(n_way: int) -> float:
    """How far (points) a result from shortened CPU training may sit from the published value and
    still count as reproducing it: 1.0 at 5-way, 2.0 at 20-way (and wider)."""
    return 1.0 if n_way <= 5 else 2.0


@dataclass(frozen=True)
class Reproduction:
    """A re-implementation users compare against: its column name in tables and CSVs, its
    display title, and where its numbers come from."""

    column: str
    title: str
    source: str


CHEN_2019 = Reproduction(
    "chen2019_pct",
    "Chen et al. 2019",
    "Chen et al., A Closer Look at Few-shot Classification, ICLR 2019, Table A5 (Conv-4, "
    "miniImageNet 5-way, 600 test episodes, their re-implementations with data augmentation)",
)
MMFEWSHOT = Reproduction(
    "mmfewshot_pct",
    "mmfewshot",
    "OpenMMLab mmfewshot model zoo (Conv4, 84x84 miniImageNet, 5-way, 2000 test episodes)",
)

#: (method, dataset, split, n_way, k_shot) -> re-implementation -> its accuracy in percent.
REPRODUCTIONS: dict[tuple[str, str, str, int, int], dict[Reproduction, float]] = {
    ("matchnet", "mini-imagenet", "standard", 5, 1): {CHEN_2019: 48.14, MMFEWSHOT: 53.35},
    ("matchnet", "mini-imagenet", "standard", 5, 5): {CHEN_2019: 63.48, MMFEWSHOT: 66.30},
    ("protonet", "mini-imagenet", "standard", 5, 1): {CHEN_2019: 44.42, MMFEWSHOT: 48.11},
    ("protonet", "mini-imagenet", "standard", 5, 5): {CHEN_2019: 64.24, MMFEWSHOT: 68.51},
    ("relnet", "mini-imagenet", "standard", 5, 1): {CHEN_2019: 49.31, MMFEWSHOT: 49.69},
    ("relnet", "mini-imagenet", "standard", 5, 5): {CHEN_2019: 66.60, MMFEWSHOT: 68.14},
}


#: Error rates (%) on Lake et al.'s 20 official within-alphabet 20-way one-shot runs of Omniglot.
LAKE_RUNS_PUBLISHED: tuple[tuple[str, float, str], ...] = (
    (
        "people",
        4.5,
        "Lake, Salakhutdinov & Tenenbaum, Human-level concept learning through probabilistic "
        "program induction, Science 2015",
    ),
    ("Bayesian Program Learning", 3.3, "Lake et al., Science 2015"),
    (
        "Siamese ConvNet",
        8.0,
        "Koch, Zemel & Salakhutdinov, Siamese Neural Networks for One-shot Image Recognition, "
        "ICML Deep Learning Workshop 2015, as reported by Lake et al., Science 2015",
    ),
)
