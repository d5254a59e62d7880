"""Published numbers the tables compare against: each method's own (declared beside the method,
read here through the registry), the re-implementations users compare against on miniImageNet
(Chen et al. 2019, mmfewshot), and the published error rates of Lake et al.'s official runs."""

from __future__ import annotations

from dataclasses import dataclass

from methods.registry import published_results


@dataclass(frozen=True)
class Published:
    """A published test accuracy in percent, its 95% CI half-width when given, and the source."""

    accuracy: float
    ci95: float | None
    source: str


def published_numbers() -> dict[tuple[str, str, str, int, int], Published]:
    """Every registered method's published accuracies (declared beside each method, see
    :attr:`methods.FewShotMethod.published`), by ``(method, dataset, split, n_way, k_shot)``."""
    return {key: Published(r.accuracy, r.ci95, r.source) for key, r in published_results().items()}


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
