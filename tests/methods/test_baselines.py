"""Baseline, Baseline++ and SimpleShot: their heads, their seeded test-time procedures, and
SimpleShot's parity with Prototypical Networks."""

from __future__ import annotations

import pytest
import torch

from methods import create_method
from methods.finetune import CosineClassifier, cosine_scale
from methods.simpleshot import SimpleShot
from tests.methods.helpers import Identity, random_episode


def _features(n_way=5, k_shot=2, n_query=3, dim=8, seed=0):
    support_x, support_y, query_x, query_y = random_episode(
        n_way, k_shot, n_query, image=(dim, 1, 1), seed=seed
    )
    return support_x, support_y, query_x, query_y


@pytest.mark.parametrize("method", ["baseline", "baselinepp", "simpleshot"])
def test_the_training_head_maps_features_to_one_logit_per_training_class(method):
    model = create_method(method, Identity(8), {})
    head = model.training_head(64)
    assert head(torch.randn(10, 8, 1, 1)).shape == (10, 64)


@pytest.mark.parametrize("method", ["baseline", "baselinepp"])
def test_test_time_classifiers_are_seeded_and_fit_the_support_set(method):
    model = create_method(method, Identity(8), {})
    support_x, support_y, query_x, _ = _features()
    support_x = support_x + 3.0 * torch.eye(8)[support_y].view(-1, 8, 1, 1)  # separable classes
    with torch.inference_mode():  # as during testing
        first = model(support_x, support_y, query_x)
        again = model(support_x, support_y, query_x)
        on_support = model(support_x, support_y, support_x)
    assert torch.equal(first, again)
    assert (on_support.argmax(1) == support_y).float().mean() >= 0.6  # chance: 0.2
    other = create_method(method, Identity(8), {"seed": 1})
    with torch.inference_mode():
        assert not torch.equal(other(support_x, support_y, query_x), first)


@pytest.mark.parametrize("method", ["baseline", "baselinepp"])
def test_test_time_classifiers_learn_the_same_under_bf16_autocast(method):
    """Testing in bf16 runs under one autocast block; the classifier trained inside it must not
    score with a cached copy of its initial weights (it did: chance accuracy)."""
    model = create_method(method, Identity(8), {})
    support_x, support_y, query_x, _ = _features()
    support_x = support_x + 3.0 * torch.eye(8)[support_y].view(-1, 8, 1, 1)
    with torch.inference_mode():
        plain = model(support_x, support_y, support_x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(support_x, support_y, support_x)
    assert torch.allclose(plain, autocast.float(), atol=0.05)  # scored in bf16, trained alike
    assert (autocast.argmax(1) == support_y).float().mean() >= 0.6


def test_baselinepp_scores_are_scaled_cosines_times_a_learned_class_norm():
    classifier = CosineClassifier(4, 3, cosine_scale(3))
    assert cosine_scale(3) == 2.0 and cosine_scale(201) == 10.0
    features = torch.randn(5, 4)
    norms = classifier.norm.detach()
    torch.testing.assert_close(norms, classifier.direction.detach().norm(dim=1))
    bound = 2.0 * norms + 1e-6  # |cos| <= 1
    assert bool((classifier(features).abs() <= bound).all())
    before = classifier(features).detach()
    with torch.no_grad():
        classifier.norm[1] *= 3.0  # a class's norm scales that class's scores only
    after = classifier(features).detach()
    torch.testing.assert_close(after[:, 1], 3.0 * before[:, 1])
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
    expected = (
        2.0
        * classifier.norm
        * (
            torch.nn.functional.normalize(features, dim=1)
            @ torch.nn.functional.normalize(classifier.direction, dim=1).T
        )
    )
    torch.testing.assert_close(classifier(features), expected.detach())
    assert {name for name, _ in classifier.named_parameters()} == {"direction", "norm"}


def test_simpleshot_without_normalisation_scores_like_protonet():
    support_x, support_y, query_x, _ = _features()
    simple = create_method("simpleshot", Identity(8), {"normalize": "un"})
    proto = create_method("protonet", Identity(8), {})
    torch.testing.assert_close(
        simple(support_x, support_y, query_x), proto(support_x, support_y, query_x)
    )


def test_simpleshot_cl2n_centres_on_the_training_mean_then_normalises():
    model = create_method("simpleshot", Identity(8), {"centre_images": 7})
    assert isinstance(model, SimpleShot)
    training = torch.randn(7, 8, 1, 1) + 3.0
    asked = []
    model.on_trained(lambda count: asked.append(count) or training)
    assert asked == [7]
    torch.testing.assert_close(model.centre, training.flatten(1).mean(0))
    transformed = model.transform(training)
    torch.testing.assert_close(transformed.norm(dim=1), torch.ones(7))
    l2n = create_method("simpleshot", Identity(8), {"normalize": "l2n"})
    assert not torch.allclose(l2n.transform(training), transformed)
    assert "centre" in model.state_dict()  # kept with the checkpoint
