"""Recipes are chosen by method, dataset and setting; the miniImageNet ones fit its splits."""

from __future__ import annotations

import pytest
import torch

from methods import Conv4, backbone_config, create_method
from methods.registry import method_recipe
from tests.methods.helpers import random_episode

METHODS = ("protonet", "relnet", "matchnet")
#: Ravi & Larochelle's split: classes per split, 600 images each.
MINI_CLASSES = {"train": 64, "val": 16, "test": 20}
MINI_IMAGES = 600


@pytest.mark.parametrize("preset", ["paper", "paper-cpu"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k_shot", [1, 5])
def test_mini_imagenet_recipes_fit_its_splits(method, preset, k_shot):
    train = method_recipe(method, preset, "mini-imagenet", 5, k_shot).train
    assert train.k_shot == k_shot
    assert train.n_way <= MINI_CLASSES["train"]
    assert train.k_shot + train.n_query <= MINI_IMAGES
    assert train.validation_fixed  # the 16 validation classes, not the test shape
    assert train.val_n_way is not None and train.val_n_way <= MINI_CLASSES["val"]


def test_the_published_mini_imagenet_training_shapes():
    def shape(method, preset, k_shot):
        t = method_recipe(method, preset, "mini-imagenet", 5, k_shot).train
        return t.n_way, t.k_shot, t.n_query

    assert shape("protonet", "paper", 1) == (30, 1, 15)  # Snell et al.
    assert shape("protonet", "paper", 5) == (20, 5, 15)
    assert shape("relnet", "paper", 1) == (5, 1, 15)  # Sung et al.
    assert shape("relnet", "paper", 5) == (5, 5, 10)
    assert shape("matchnet", "paper", 1) == (5, 1, 15)  # Ravi & Larochelle's re-run
    relnet = method_recipe("relnet", "paper", "mini-imagenet", 5, 1)
    assert relnet.backbone == "conv4-relnet" and relnet.options["relation_layout"] == "unpadded"
    assert method_recipe("matchnet", "paper-cpu", "mini-imagenet", 5, 5).options["fce"] is True


def test_omniglot_recipes_do_not_change_with_the_new_datasets():
    """The Omniglot branch is what every committed Omniglot record was trained with (their
    hashes are pinned in tests/benchmarks/experiment)."""
    recipe = method_recipe("relnet", "paper-cpu", "omniglot", 20, 1)
    assert (recipe.train.n_way, recipe.train.episodes, recipe.options) == (20, 15000, {})
    assert method_recipe("protonet", "paper", "omniglot", 5, 1).train.n_way == 60


@pytest.mark.parametrize("preset", ["paper", "paper-cpu"])
@pytest.mark.parametrize("method", METHODS)
def test_a_mini_imagenet_recipe_trains_a_step_and_validates_on_84x84_images(method, preset):
    """A tiny run of the recipe's shapes: one training step on its training episode shape (5
    queries at most, to keep it fast) and one validation-shaped episode in eval mode."""
    recipe = method_recipe(method, preset, "mini-imagenet", 5, 5)
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
