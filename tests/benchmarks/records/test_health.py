"""Training-health verdicts: a model that did not learn is never passed silently."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.records.health import (
    DIVERGED,
    LEARNED,
    NEAR_CHANCE,
    UNKNOWN,
    did_not_learn,
    record_health,
    verdict,
)
from benchmarks.records.record import Record
from methods import create_method
from methods.backbones import Conv4, backbone_config


@pytest.fixture
def tiny_split():
    """Training and validation splits of pure noise: no image says anything about its class."""
    from datasets import FewShotSplit

    def noise(name: str, classes: int, per_class: int, seed: int) -> FewShotSplit:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (classes * per_class, 1, 28, 28), generator=generator)
        sizes = torch.full((classes,), per_class)
        return FewShotSplit(
            name=name,
            images=images.to(torch.uint8),
            class_start=torch.arange(classes) * per_class,
            class_size=sizes,
            class_rotation=torch.zeros(classes, dtype=torch.int64),
            class_names=tuple(f"c{i}" for i in range(classes)),
        )

    return noise("noise/train", 12, 8, 0), noise("noise/val", 6, 8, 1)


def _history(*losses: float, accuracy: float = 0.6) -> list[dict]:
    return [
        {"episode": 100 * (i + 1), "train_loss": loss, "val_accuracy": accuracy}
        for i, loss in enumerate(losses)
    ]


def test_a_loss_well_below_chance_with_validation_above_chance_learned():
    health = verdict(_history(1.5, 1.0), math.log(5), 0.2)
    assert health["verdict"] == LEARNED and health["reasons"] == []


def test_the_protonet_cell_that_sat_at_chance_is_flagged():
    """The committed miniImageNet 5-way 1-shot ProtoNet: 1.50 at the end, against ln 5."""
    health = verdict(_history(20.0, 1.95, 1.50, accuracy=0.31), math.log(5), 0.2)
    assert health["verdict"] == NEAR_CHANCE
    assert "chance loss" in health["reasons"][0]
    assert did_not_learn(health)


def test_validation_at_chance_is_flagged_even_when_the_loss_falls():
    health = verdict(_history(1.0, accuracy=0.22), math.log(5), 0.2)
    assert health["verdict"] == NEAR_CHANCE and "validation" in health["reasons"][0]


def test_a_non_finite_loss_is_diverged_and_no_history_is_unknown():
    assert verdict(_history(1.0, math.nan), 1.6, 0.2)["verdict"] == DIVERGED
    unknown = verdict([], 1.6, 0.2)
    assert unknown["verdict"] == UNKNOWN and not did_not_learn(unknown)


def test_the_relation_networks_chance_loss_is_that_of_answering_one_over_n():
    net = create_method("relnet", Conv4(1, backbone_config("conv4-relnet")), {})
    assert type(net).chance_loss(5, net.options) == pytest.approx(0.16)
    ce = create_method("relnet", Conv4(1, backbone_config("conv4-relnet")), {"loss": "ce"})
    assert type(ce).chance_loss(5, ce.options) == pytest.approx(math.log(5))


def test_a_model_that_cannot_learn_gets_a_did_not_learn_verdict_from_training(tiny_split):
    """Labels drawn independently of the images: nothing can be learned, and the verdict says
    so (the training loss stays at ln N, validation at 1/N)."""
    from benchmarks.engine.training import train
    from datasets import EpisodeSampler
    from methods.recipes import TrainConfig

    train_split, val_split = tiny_split
    torch.manual_seed(0)
    model = create_method("protonet", Conv4(1, backbone_config("conv4")), {})
    config = TrainConfig(
        episodes=40, n_way=4, k_shot=1, n_query=3, lr=1e-3, val_every=20, val_episodes=20
    )
    result = train(
        model,
        EpisodeSampler(train_split, 4, 1, 3, 0, "train"),
        config,
        torch.device("cpu"),
        val_sampler=EpisodeSampler(val_split, 4, 1, 3, 0, "val"),
        progress=False,
    )
    health = verdict(result.history, math.log(4), 1 / 4)
    assert health["verdict"] == NEAR_CHANCE, health


def test_records_made_before_verdicts_get_one_from_their_history():
    record = Record.from_dict(
        {
            "config_hash": "x",
            "method": "relnet",
            "n_way": 5,
            "method_options": {},
            "config": {"recipe": {"train": {"n_way": 5, "val_n_way": 5}}},
            "val_history": _history(0.155, 0.138, accuracy=0.38),
        }
    )
    health = record_health(record)
    assert health["verdict"] == NEAR_CHANCE and health["chance_loss"] == pytest.approx(0.16)
