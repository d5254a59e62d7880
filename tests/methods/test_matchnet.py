"""Matching Networks: tempered cosine attention over the support set, summed per class."""

from __future__ import annotations

import pytest
import torch

from methods import Conv4, create_method
from methods.matchnet import MatchingNet, MatchingNetOptions
from tests.methods.helpers import Identity, random_episode


def test_scores_match_a_hand_computation():
    method = MatchingNet(Identity(2), MatchingNetOptions(temperature=2.0))
    support_x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]).view(3, 2, 1, 1)
    support_y = torch.tensor([0, 1, 0])
    query_x = torch.tensor([[2.0, 2.0]]).view(1, 2, 1, 1)
    cosines = torch.tensor([2**-0.5, 2**-0.5, -(2**-0.5)])
    attention = torch.softmax(2.0 * cosines, 0)
    expected = torch.tensor([[attention[0] + attention[2], attention[1]]])
    scores = method(support_x, support_y, query_x)
    assert torch.allclose(scores, expected)
    assert torch.allclose(method.loss(scores, torch.tensor([1])), -torch.log(expected[:, 1]).mean())


@pytest.mark.parametrize("fce", [False, True])
def test_probabilities_and_gradients(fce):
    method = create_method("matchnet", Conv4(1), {"fce": fce, "fce_steps": 2})
    support_x, support_y, query_x, query_y = random_episode(n_way=4, k_shot=3, n_query=2)
    scores = method(support_x, support_y, query_x)
    assert scores.shape == (8, 4)
    assert bool((scores >= 0).all()) and torch.allclose(scores.sum(1), torch.ones(8))
    method.loss(scores, query_y).backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None]
    assert not missing
    assert (method.head_parameters() > 0) == fce


def test_temperature_sharpens_the_attention():
    support_x, support_y, query_x, _ = random_episode(n_way=3, k_shot=1, n_query=1, image=(4, 1, 1))
    soft = MatchingNet(Identity(4), MatchingNetOptions(temperature=1.0))(
        support_x, support_y, query_x
    )
    sharp = MatchingNet(Identity(4), MatchingNetOptions(temperature=50.0))(
        support_x, support_y, query_x
    )
    assert sharp.max(1).values.min() > soft.max(1).values.max()


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match=r"matchnet\.temperature=0\.0 is not valid: must be > 0"):
        MatchingNet(Identity(2), MatchingNetOptions(temperature=0.0))


def test_a_learned_temperature_starts_at_the_given_value_and_is_trained():
    method = create_method("matchnet", Conv4(1), {"temperature": "5", "learn_temperature": "true"})
    assert method.head_parameters() == 1
    assert torch.isclose(method.log_temperature.exp(), torch.tensor(5.0))
    fixed = MatchingNet(method.backbone, MatchingNetOptions(temperature=5.0))
    support_x, support_y, query_x, query_y = random_episode(n_way=4, k_shot=2, n_query=2)
    scores = method(support_x, support_y, query_x)
    assert torch.allclose(scores, fixed(support_x, support_y, query_x))
    method.loss(scores, query_y).backward()
    assert method.log_temperature.grad is not None and method.log_temperature.grad != 0
    assert "log_temperature" in method.state_dict()


def test_a_fixed_temperature_is_not_a_parameter_nor_saved():
    method = MatchingNet(Identity(2), MatchingNetOptions(temperature=3.0))
    assert method.head_parameters() == 0
    assert "log_temperature" not in method.state_dict()


def test_support_normalized_similarity_keeps_the_query_norm_as_sharpness():
    method = MatchingNet(
        Identity(2), MatchingNetOptions(temperature=1.0, similarity="support-normalized")
    )
    support_x = torch.tensor([[2.0, 0.0], [0.0, 5.0]]).view(2, 2, 1, 1)
    support_y = torch.tensor([0, 1])
    query_x = torch.tensor([[3.0, 1.0]]).view(1, 2, 1, 1)
    expected = torch.softmax(torch.tensor([3.0, 1.0]), 0).unsqueeze(0)  # q . s / |s|
    assert torch.allclose(method(support_x, support_y, query_x), expected)
    doubled = method(support_x, support_y, 2 * query_x)
    assert doubled[0, 0] > expected[0, 0]  # a longer query attends more sharply


def test_an_unknown_similarity_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="choose one of: cosine, support-normalized"):
        create_method("matchnet", Conv4(1), {"similarity": "euclidean"})


@pytest.mark.parametrize(("image", "features"), [((1, 28, 28), 64), ((3, 84, 84), 1600)])
def test_full_context_embeddings_are_sized_by_the_flattened_feature_map(image, features):
    """64x1x1 maps on Omniglot, 64x5x5 on miniImageNet: the LSTMs see D*h*w features."""
    backbone = Conv4(image[0], image_size=image[1])
    method = create_method("matchnet", backbone, {"fce": True, "fce_steps": 1})
    assert method.context.query_cell.input_size == features
    assert method.context.support_lstm.hidden_size == features
    support_x, support_y, query_x, query_y = random_episode(
        n_way=3, k_shot=2, n_query=1, image=image
    )
    scores = method(support_x, support_y, query_x)
    assert scores.shape == (3, 3)
    method.loss(scores, query_y).backward()


def test_fce_without_the_image_size_says_how_to_size_it():
    method = create_method("matchnet", Conv4(3), {"fce": True})  # sized for 1x1 maps
    support_x, support_y, query_x, _ = random_episode(
        n_way=2, k_shot=1, n_query=1, image=(3, 84, 84)
    )
    with pytest.raises(ValueError, match="sized for 64 features per image but got 1600"):
        method(support_x, support_y, query_x)
