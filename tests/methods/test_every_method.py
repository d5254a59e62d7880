"""Every registered method, on the CPU: the contract every plug-in must keep.

Parametrised over the registry, so a new method is checked as soon as it is registered.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.experiment.presets import available_presets
from datasets.registry import FAMILIES
from methods import Conv4, available_methods, backbone_config, create_method, method_class
from methods.registry import method_recipe
from tests.methods.helpers import random_episode


def _built(name: str, backbone: str = "conv4"):
    torch.manual_seed(0)
    return create_method(name, Conv4(1, backbone_config(backbone)))


@pytest.mark.parametrize("name", available_methods())
@pytest.mark.parametrize(("n_way", "k_shot"), [(5, 1), (3, 2)])
def test_scores_have_one_row_per_query_and_one_column_per_class(name, n_way, k_shot):
    support_x, support_y, query_x, _ = random_episode(n_way, k_shot, n_query=2)
    scores = _built(name)(support_x, support_y, query_x)
    assert scores.shape == (len(query_x), n_way)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", available_methods())
def test_a_training_step_changes_the_weights_and_gives_a_finite_loss(name):
    """On an episode, or on a mini-batch through the training head for methods whose recipes
    train them as classifiers (the classification protocol)."""
    method = _built(name)
    support_x, support_y, query_x, query_y = random_episode(5, 1, n_query=3)
    before = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    if method_recipe(name, "quick", "characters", 5, 1).train.classification:
        head = method.training_head(5)
        optimizer.add_param_group({"params": list(head.parameters())})
        loss = F.cross_entropy(head(method.backbone(query_x)), query_y)
    else:
        loss = method.loss(method(support_x, support_y, query_x), query_y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, method.parameters())]
    assert any(changed)


@pytest.mark.parametrize("name", available_methods())
def test_eval_mode_is_deterministic(name):
    method = _built(name).eval()
    support_x, support_y, query_x, _ = random_episode(5, 2, n_query=2)
    with torch.no_grad():
        first = method(support_x, support_y, query_x)
        second = method(support_x, support_y, query_x)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", available_methods())
def test_every_recipe_in_the_table_names_a_known_preset_family_and_layout(name):
    for entry in method_class(name).recipes:
        assert entry.preset in available_presets()
        assert entry.family in FAMILIES
        recipe = entry.make(5, 1)
        backbone_config(recipe.backbone)  # names a known layout
        assert recipe.train.episodes > 0 or recipe.pretrain is not None


@pytest.mark.parametrize("name", available_methods())
def test_every_method_has_a_recipe_for_every_preset_on_natural_images(name):
    for preset in available_presets():
        method_recipe(name, preset, "natural-images", 5, 1)
