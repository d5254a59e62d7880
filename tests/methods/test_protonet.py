"""Prototypical Networks: negative squared distance to class means, cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import Conv4, create_method
from methods.protonet import PrototypicalNet
from tests.methods.helpers import Identity, random_episode


def test_scores_match_a_hand_computation():
    method = PrototypicalNet(Identity(2))
    support_x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]]).view(4, 2, 1, 1)
    support_y = torch.tensor([0, 0, 1, 1])
    query_x = torch.tensor([[1.0, 1.0], [0.0, 5.0]]).view(2, 2, 1, 1)
    # prototypes: class 0 = (1, 0), class 1 = (0, 5)
    expected = -torch.tensor([[1.0, 1.0 + 16.0], [1.0 + 25.0, 0.0]])
    scores = method(support_x, support_y, query_x)
    assert torch.allclose(scores, expected)
    labels = torch.tensor([0, 1])
    assert torch.allclose(method.loss(scores, labels), F.cross_entropy(expected, labels))


def test_support_order_does_not_matter():
    method = PrototypicalNet(Identity(1))
    support_x = torch.arange(6.0).view(6, 1, 1, 1)
    query_x = torch.tensor([0.5, 4.5]).view(2, 1, 1, 1)
    grouped = method(support_x, torch.tensor([0, 0, 0, 1, 1, 1]), query_x)
    shuffled = method(support_x[[3, 0, 4, 1, 5, 2]], torch.tensor([1, 0, 1, 0, 1, 0]), query_x)
    assert torch.allclose(grouped, shuffled)


def test_shape_and_gradients_on_conv4():
    method = create_method("protonet", Conv4(1))
    support_x, support_y, query_x, query_y = random_episode(n_way=5, k_shot=2, n_query=3)
    scores = method(support_x, support_y, query_x)
    assert scores.shape == (15, 5) and bool((scores <= 0).all())
    method.loss(scores, query_y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())
    assert method.head_parameters() == 0
