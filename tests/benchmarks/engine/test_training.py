"""Training: each method learns on real Omniglot; checkpoints, divergence and budgets."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from benchmarks.engine.devices import seeded
from benchmarks.engine.evaluation import evaluate
from benchmarks.engine.training import (
    NonFiniteLossError,
    SnapshotMismatchError,
    Snapshots,
    train,
)
from datasets import EpisodeSampler, FewShotSplit
from datasets.omniglot import omniglot_split
from methods import Conv4, backbone_config, create_method
from methods.recipes import TrainConfig
from tests.conftest import numbered_split

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("method", "layout", "episodes"),
    [("protonet", "conv4", 40), ("matchnet", "conv4", 40), ("relnet", "conv4-relnet", 60)],
)
def test_each_method_clearly_beats_chance_on_held_out_classes(omniglot, method, layout, episodes):
    train_split = omniglot_split(omniglot, "vinyals", "train")
    test_split = omniglot_split(omniglot, "vinyals", "test")
    with seeded(0):
        model = create_method(method, Conv4(1, backbone_config(layout)))
    config = TrainConfig(episodes=episodes, n_way=5, k_shot=1, n_query=10, val_every=0)
    result = train(
        model, EpisodeSampler(train_split, 5, 1, 10, 0, "train"), config, CPU, progress=False
    )
    assert result.episodes_trained == episodes
    accuracy = evaluate(
        model, EpisodeSampler(test_split, 5, 1, 10, 0, "test"), 60, CPU, progress=False
    )
    # chance is 20%; the lower end of the 95% interval must be far above it
    assert accuracy.mean - accuracy.ci95 > 0.45, (
        f"{method}: {accuracy.mean:.3f} ± {accuracy.ci95:.3f}"
    )


def _small_protonet():
    with seeded(0):
        return create_method("protonet", Conv4(1, backbone_config("conv4")))


def _small_split():
    images = torch.randint(0, 255, (60, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    split = numbered_split([6] * 10, side=16)
    return split.__class__(**{**split.__dict__, "images": images.to(torch.uint8)})


def _train_validated(model, config: TrainConfig, **options):
    """Train ``model`` on 3-way 1-shot 2-query episodes of the small split, validated on its own
    episodes of the same shape; the :class:`TrainResult`."""
    split = _small_split()
    train_episodes = EpisodeSampler(split, 3, 1, 2, 0, "train")
    val_episodes = EpisodeSampler(split, 3, 1, 2, 0, "val")
    return train(model, train_episodes, config, CPU, val_episodes, progress=False, **options)


def test_best_validation_checkpoint_is_restored():
    split = _small_split()
    model = _small_protonet()
    config = TrainConfig(episodes=6, n_way=3, k_shot=1, n_query=2, val_every=2, val_episodes=4)
    result = _train_validated(model, config)
    assert [h["episode"] for h in result.history] == [2, 4, 6]
    best = max(h["val_accuracy"] for h in result.history)
    assert result.best_val_accuracy == best
    again = evaluate(model, EpisodeSampler(split, 3, 1, 2, 0, "val"), 4, CPU, progress=False)
    assert again.mean == pytest.approx(best)


def test_non_finite_loss_stops_training_with_the_episode_named():
    model = _small_protonet()
    model.loss = lambda scores, y: scores.sum() * float("nan")
    config = TrainConfig(episodes=5, n_way=3, k_shot=1, n_query=2, val_every=0)
    with pytest.raises(NonFiniteLossError, match="protonet: loss became nan at training episode 0"):
        train(
            model, EpisodeSampler(_small_split(), 3, 1, 2, 0, "train"), config, CPU, progress=False
        )


def test_time_budget_stops_training_and_says_so():
    config = TrainConfig(
        episodes=1000, n_way=3, k_shot=1, n_query=2, val_every=0, time_budget_s=0.0
    )
    result = train(
        _small_protonet(),
        EpisodeSampler(_small_split(), 3, 1, 2, 0, "train"),
        config,
        CPU,
        progress=False,
    )
    assert result.stopped_by_budget and result.episodes_trained < 1000


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        TrainConfig(lr=0.0)


def test_bf16_training_takes_finite_steps():
    config = TrainConfig(episodes=3, n_way=3, k_shot=1, n_query=2, val_every=0)
    model = _small_protonet()
    before = [p.detach().clone() for p in model.parameters()]
    result = train(
        model,
        EpisodeSampler(_small_split(), 3, 1, 2, 0, "train"),
        config,
        CPU,
        progress=False,
        precision="bf16",
    )
    assert result.episodes_trained == 3
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("method", ["baseline", "baselinepp", "simpleshot"])
def test_the_classification_protocol_trains_a_classifier_and_its_loss_falls(omniglot, method):
    """Mini-batches over all training classes through the method's training head; the backbone
    then serves episodes of unseen classes. SimpleShot keeps the training mean as its centre.
    (100 training classes, so that 60 steps see each class often enough for the loss to fall.)"""
    full = omniglot_split(omniglot, "vinyals", "train")
    keep = slice(0, 400, 4)  # 100 characters, unrotated
    train_split = FewShotSplit(
        "omniglot/vinyals/train-100",
        full.images,
        full.class_start[keep],
        full.class_size[keep],
        full.class_rotation[keep],
        full.class_names[keep],
    )
    test_split = omniglot_split(omniglot, "vinyals", "test")
    with seeded(0):
        model = create_method(method, Conv4(1, backbone_config("conv4"), image_size=28))
    config = TrainConfig(
        episodes=60,
        n_way=5,
        k_shot=1,
        n_query=5,
        val_every=20,
        val_episodes=3,
        protocol="classification",
        batch_size=64,
        lr=3e-3,
    )
    val = EpisodeSampler(omniglot_split(omniglot, "vinyals", "val"), 5, 1, 5, 0, "val")
    result = train(
        model,
        EpisodeSampler(train_split, 5, 1, 5, 0, "train"),
        config,
        CPU,
        val_sampler=val,
        progress=False,
    )
    assert result.episodes_trained == 60
    losses = [entry["train_loss"] for entry in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    accuracy = evaluate(
        model, EpisodeSampler(test_split, 5, 1, 5, 0, "test"), 20, CPU, progress=False
    )
    assert accuracy.mean - accuracy.ci95 > 0.25, f"{method}: {accuracy.mean:.3f}"  # chance: 0.2
    if method == "simpleshot":
        assert float(model.centre.abs().sum()) > 0


def test_classification_batches_are_seeded_and_labelled_with_their_classes():
    from datasets import ClassificationBatches

    split = numbered_split([3, 4, 5])  # image i is filled with i: the class is known from it
    batches = ClassificationBatches(split, 6, seed=0)
    images, labels = batches[0]
    again, same_labels = ClassificationBatches(split, 6, seed=0)[0]
    assert torch.equal(images, again) and torch.equal(labels, same_labels)
    value = (images[:, 0, 0, 0] * 255).round().long()
    ends = torch.tensor([3, 7, 12])
    assert torch.equal(torch.searchsorted(ends, value, right=True), labels)
    assert len(set(value.tolist())) == 6  # no image twice within a batch
    assert not torch.equal(batches[1][1], labels) or not torch.equal(batches[1][0], images)
    with pytest.raises(ValueError, match=r"batch_size must lie in 1\.\.12"):
        ClassificationBatches(split, 13)


def _snapshotted_training(method_name: str, config: TrainConfig, resume_from=None):
    """Train a fresh seeded ``method_name`` on the small split with a snapshot after every step;
    ``(model, result, snapshots)``, each snapshot a deep copy taken when it was handed over."""
    with seeded(0):
        model = create_method(method_name, Conv4(1, backbone_config("conv4")))
    taken: list[dict] = []
    keep = Snapshots(resume_from, lambda state: taken.append(copy.deepcopy(state)), every_s=0.0)
    return model, _train_validated(model, config, snapshots=keep), taken


@pytest.mark.parametrize("method_name, protocol", [("protonet", None), ("baseline", 8)])
def test_training_continued_from_a_snapshot_takes_exactly_the_steps_of_one_run(
    method_name, protocol
):
    """A snapshot between two validations (a running loss under way) and one right after a
    validation both lead to the weights, history and best episode of the uninterrupted run."""
    config = TrainConfig(
        episodes=7,
        n_way=3,
        k_shot=1,
        n_query=2,
        val_every=3,
        val_episodes=3,
        **({"protocol": "classification", "batch_size": protocol} if protocol else {}),
    )
    whole, whole_result, taken = _snapshotted_training(method_name, config)
    assert [state["episode"] for state in taken] == [1, 2, 3, 4, 5, 6, 7]
    for at in (2, 3):
        resumed, result, _ = _snapshotted_training(method_name, config, taken[at - 1])
        assert result.resumed_at == [at]
        assert result.episodes_trained == 7
        assert result.history == whole_result.history
        assert result.best_episode == whole_result.best_episode
        for name, value in whole.state_dict().items():
            assert torch.equal(resumed.state_dict()[name], value), name
    assert whole_result.resumed_at == []


def test_a_snapshot_of_another_training_configuration_is_refused():
    config = TrainConfig(episodes=4, n_way=3, k_shot=1, n_query=2, val_every=2, val_episodes=2)
    _, _, taken = _snapshotted_training("protonet", config)
    longer = dataclasses.replace(config, episodes=8)
    with pytest.raises(SnapshotMismatchError, match="taken under the training configuration"):
        _snapshotted_training("protonet", longer, taken[0])
    with pytest.raises(SnapshotMismatchError, match="layout"):
        _snapshotted_training("protonet", config, {**taken[0], "format": 0})
    with pytest.raises(SnapshotMismatchError, match="does not fit relnet"):
        _snapshotted_training("relnet", config, taken[0])


def test_the_time_spent_before_an_interruption_counts_toward_the_wall_time():
    config = TrainConfig(episodes=3, n_way=3, k_shot=1, n_query=2, val_every=0)
    _, _, taken = _snapshotted_training("protonet", config)
    earlier = {**taken[0], "result": {**taken[0]["result"], "wall_seconds": 1000.0}}
    _, result, _ = _snapshotted_training("protonet", config, earlier)
    assert 1000.0 < result.wall_seconds < 1100.0
