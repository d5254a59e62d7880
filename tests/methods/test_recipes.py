"""Recipes are data: a table per method keyed by preset, dataset family and backbone, with the
published numbers each aims at; the natural-image ones fit miniImageNet's splits."""

from __future__ import annotations

import pytest
import torch

from datasets.registry import FAMILIES, available_datasets, dataset_spec
from methods import Conv4, available_methods, backbone_config, create_method, method_class
from methods.recipes import (
    ANY_BACKBONE,
    NATURAL_PRETRAINING,
    MissingRecipeError,
    TrainConfig,
)
from methods.registry import method_recipe, recipe_entry
from tests.methods.helpers import random_episode

METHODS = ("protonet", "relnet", "matchnet")
#: Ravi & Larochelle's split: classes per split, 600 images each.
MINI_CLASSES = {"train": 64, "val": 16, "test": 20}
MINI_IMAGES = 600
NATURAL = "natural-images"


def test_every_dataset_declares_a_known_family():
    families = {name: dataset_spec(name).family for name in available_datasets()}
    assert set(families.values()) <= set(FAMILIES)
    assert families["omniglot"] == "characters"
    natural = ("mini-imagenet", "tiered-imagenet", "cifar-fs", "fc100", "cub", "folder")
    assert all(families[name] == NATURAL for name in natural)


@pytest.mark.parametrize("name", sorted(set(available_methods())))
def test_a_table_has_one_entry_per_preset_family_and_backbone(name):
    keys = [entry.key for entry in method_class(name).recipes]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("preset", ["paper", "paper-cpu", "pretrained-cpu"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k_shot", [1, 5])
def test_natural_image_recipes_fit_mini_imagenet_splits(method, preset, k_shot):
    train = method_recipe(method, preset, NATURAL, 5, k_shot).train
    assert train.k_shot == k_shot
    assert train.n_way <= MINI_CLASSES["train"]
    assert train.k_shot + train.n_query <= MINI_IMAGES
    assert train.validation_fixed  # the 16 validation classes, not the test shape
    assert train.val_n_way is not None and train.val_n_way <= MINI_CLASSES["val"]


def test_the_published_mini_imagenet_training_shapes():
    def shape(method, preset, k_shot):
        t = method_recipe(method, preset, NATURAL, 5, k_shot).train
        return t.n_way, t.k_shot, t.n_query

    assert shape("protonet", "paper", 1) == (30, 1, 15)  # Snell et al.
    assert shape("protonet", "paper", 5) == (20, 5, 15)
    assert shape("relnet", "paper", 1) == (5, 1, 15)  # Sung et al.
    assert shape("relnet", "paper", 5) == (5, 5, 10)
    assert shape("matchnet", "paper", 1) == (5, 1, 15)  # Ravi & Larochelle's re-run
    relnet = method_recipe("relnet", "paper", NATURAL, 5, 1)
    assert relnet.backbone == "conv4-relnet" and relnet.options["relation_layout"] == "unpadded"
    assert method_recipe("matchnet", "paper-cpu", NATURAL, 5, 5).options["fce"] is True


def test_natural_image_recipes_name_the_published_numbers_they_aim_at():
    assert recipe_entry("protonet", "pretrained-cpu", NATURAL).published == {
        "mini-imagenet 5-way 1-shot": 49.42,
        "mini-imagenet 5-way 5-shot": 68.20,
    }
    for method in METHODS:
        entry = recipe_entry(method, "paper-cpu", NATURAL)
        assert entry.source and len(entry.published) == 2


def test_character_recipes_are_those_the_omniglot_records_were_trained_with():
    """What every committed Omniglot record was trained with (their hashes are pinned in
    tests/benchmarks/experiment)."""
    recipe = method_recipe("relnet", "paper-cpu", "characters", 20, 1)
    assert (recipe.train.n_way, recipe.train.episodes, recipe.options) == (20, 15000, {})
    assert method_recipe("protonet", "paper", "characters", 5, 1).train.n_way == 60
    assert method_recipe("protonet", "paper-cpu", "characters", 5, 1).options == {}


def test_protonet_divides_distances_by_a_temperature_on_natural_images_only():
    assert method_recipe("protonet", "paper-cpu", NATURAL, 5, 1).options == {"temperature": 64.0}
    assert "temperature" not in method_recipe("protonet", "paper-cpu", "characters", 5, 1).options


def test_a_combination_without_a_recipe_is_an_error_that_lists_the_recipes():
    with pytest.raises(MissingRecipeError) as error:
        method_recipe("protonet", "pretrained-cpu", "characters", 5, 1)
    message = str(error.value)
    assert "pretrained-cpu/characters" in message
    assert "paper-cpu/natural-images/conv4" in message and "quick/characters/any" in message


def test_a_backbone_without_its_own_recipe_gets_the_any_backbone_one_or_an_error():
    assert recipe_entry("protonet", "paper-cpu", "characters", "resnet12").backbone == ANY_BACKBONE
    with pytest.raises(MissingRecipeError, match="paper-cpu/natural-images/resnet12"):
        method_recipe("protonet", "paper-cpu", NATURAL, 5, 1, backbone="resnet12")


@pytest.mark.parametrize("method", sorted(set(available_methods())))
def test_every_pretrained_recipe_starts_from_the_one_shared_stage(method):
    recipe = method_recipe(method, "pretrained-cpu", NATURAL, 5, 1)
    assert recipe.pretrain == NATURAL_PRETRAINING
    assert recipe.backbone == "conv4"
    assert recipe.train.augment == "crop-flip"


def test_the_pretraining_stage_is_the_measured_classifier_recipe():
    train = NATURAL_PRETRAINING.train
    assert train.classification and train.batch_size == 128
    assert (train.optimizer, train.schedule, train.augment) == ("sgd", "cosine", "crop-flip")
    assert train.episodes == 16 * 38_400 // 128  # 16 epochs of miniImageNet's training images


def test_train_config_rejects_unknown_optimisers_schedules_and_augmentations():
    for field, value in (("optimizer", "lamb"), ("schedule", "poly"), ("augment", "mixup")):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: value})


@pytest.mark.parametrize("preset", ["paper", "paper-cpu", "pretrained-cpu"])
@pytest.mark.parametrize("method", METHODS)
def test_a_natural_image_recipe_trains_a_step_and_validates_on_84x84_images(method, preset):
    """A tiny run of the recipe's shapes: one training step on its training episode shape (5
    queries at most, to keep it fast) and one validation-shaped episode in eval mode."""
    recipe = method_recipe(method, preset, NATURAL, 5, 5)
    torch.manual_seed(0)
    backbone = Conv4(3, backbone_config(recipe.backbone), image_size=84)
    model = create_method(method, backbone, recipe.options)
    train = recipe.train
    support_x, support_y, query_x, query_y = random_episode(
        train.n_way, train.k_shot, min(train.n_query, 5), image=(3, 84, 84)
    )
    model.train()
    loss = model.loss(model(support_x, support_y, query_x), query_y)
    loss.backward()
    assert torch.isfinite(loss)
    assert train.val_n_way is not None
    model.eval()
    support_x, support_y, query_x, _ = random_episode(
        train.val_n_way, train.k_shot, 2, image=(3, 84, 84)
    )
    with torch.no_grad():
        scores = model(support_x, support_y, query_x)
    assert scores.shape == (2 * train.val_n_way, train.val_n_way)
