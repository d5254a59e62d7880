"""Relation Network: every variant, on 1x1 and 5x5 feature maps."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from methods import Conv4, backbone_config, create_method
from methods.relnet import RelationNet, RelationNetOptions
from tests.methods.helpers import random_episode

VARIANTS = list(itertools.product(["conv", "mlp"], ["sum", "mean", "score-mean"], ["mse", "ce"]))
MAPS = {"1x1": "conv4", "5x5": "conv4-relnet"}  # on 28x28 Omniglot images


def _method(relation, aggregate, loss, layout, pairwise="factorized"):
    torch.manual_seed(0)
    options = {"relation": relation, "aggregate": aggregate, "loss": loss, "pairwise": pairwise}
    return create_method("relnet", Conv4(1, backbone_config(layout)), options)


@pytest.mark.parametrize("maps", MAPS)
@pytest.mark.parametrize(("relation", "aggregate", "loss"), VARIANTS)
def test_every_variant_scores_in_unit_range_with_gradients(relation, aggregate, loss, maps):
    method = _method(relation, aggregate, loss, MAPS[maps])
    support_x, support_y, query_x, query_y = random_episode(n_way=5, k_shot=3, n_query=2)
    scores = method(support_x, support_y, query_x)
    assert scores.shape == (10, 5)
    assert bool((scores >= 0).all() and (scores <= 1).all())
    value = method.loss(scores, query_y)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    without = {
        n for n, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    }
    if loss == "ce":
        # softmax cross-entropy ignores a shift shared by all logits: the output bias gets none
        without -= {"relation.out.bias", "relation.rest.3.bias"}
    assert not without, f"no gradient reaches {without}"


@pytest.mark.parametrize("maps", MAPS)
@pytest.mark.parametrize("relation", ["conv", "mlp"])
@pytest.mark.parametrize("aggregate", ["sum", "score-mean"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_factorized_pairs_equal_the_naive_pairwise_form(relation, aggregate, maps, mode):
    fast = _method(relation, aggregate, "mse", MAPS[maps], "factorized")
    naive = _method(relation, aggregate, "mse", MAPS[maps], "naive")
    naive.load_state_dict(fast.state_dict())
    fast.train(mode == "train")
    naive.train(mode == "train")
    support_x, support_y, query_x, query_y = random_episode(n_way=5, k_shot=2, n_query=3)
    a, b = fast(support_x, support_y, query_x), naive(support_x, support_y, query_x)
    assert torch.allclose(a, b, atol=1e-5)
    fast.loss(a, query_y).backward()
    naive.loss(b, query_y).backward()
    for (name, p), q in zip(fast.named_parameters(), naive.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-3), name


def test_mse_loss_is_against_one_hot_targets():
    method = _method("conv", "sum", "mse", "conv4")
    scores = torch.tensor([[0.9, 0.2], [0.4, 0.7]])
    expected = ((0.1**2) + 0.2**2 + 0.4**2 + 0.3**2) / 4
    assert torch.isclose(method.loss(scores, torch.tensor([0, 1])), torch.tensor(expected))


def test_ce_loss_is_cross_entropy_of_relation_logits():
    method = _method("conv", "sum", "ce", "conv4")
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    labels = torch.tensor([0, 1])
    assert torch.isclose(
        method.loss(torch.sigmoid(logits), labels), F.cross_entropy(logits, labels)
    )


def test_aggregations_differ_only_in_how_support_samples_are_combined():
    support_x, support_y, query_x, _ = random_episode(n_way=3, k_shot=4, n_query=2)
    by_sum = _method("conv", "sum", "mse", "conv4-relnet").eval()
    by_mean = _method("conv", "mean", "mse", "conv4-relnet").eval()
    by_score = _method("conv", "score-mean", "mse", "conv4-relnet").eval()
    for other in (by_mean, by_score):
        other.load_state_dict(by_sum.state_dict())
    with torch.no_grad():
        s_sum = by_sum(support_x, support_y, query_x)
        s_mean = by_mean(support_x, support_y, query_x)
        s_score = by_score(support_x, support_y, query_x)
        # score-mean by hand: one relation score per support sample, averaged per class
        features = by_sum.backbone(torch.cat([support_x, query_x]))
        support, query = features[:12], features[12:]
        per_sample = torch.sigmoid(by_sum.relation.pair_logits(support, query))  # [Q, S]
        by_hand = per_sample.view(6, 3, 4).mean(-1)
    assert not torch.allclose(s_sum, s_mean)
    assert torch.allclose(s_score, by_hand, atol=1e-6)


def test_paper_layout_relation_module_reduces_5x5_maps_to_1x1():
    method = RelationNet(Conv4(1, backbone_config("conv4-relnet")), RelationNetOptions())
    seen = []
    method.relation.head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    support_x, support_y, query_x, _ = random_episode(n_way=5, k_shot=1, n_query=1)
    method(support_x, support_y, query_x)
    assert seen == [torch.Size([25, 64])]  # 5 queries x 5 classes, 64 channels of 1x1
    # paper sizes: conv 128->64 and 64->64 (3x3), FC 64->8, FC 8->1, two BatchNorms
    expected = (128 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + 2 * 128 + (64 * 8 + 8) + (8 + 1)
    assert method.head_parameters() == expected


def test_mini_imagenet_relation_module_reduces_19x19_maps_to_3x3_and_flattens_them():
    """Sung et al.'s miniImageNet module: unpadded conv + pool twice, 64x19x19 -> 64x8x8 ->
    64x3x3, flattened into FC 576 -> 8 -> 1."""
    torch.manual_seed(0)
    backbone = Conv4(3, backbone_config("conv4-relnet"), image_size=84)
    method = create_method("relnet", backbone, {"relation_layout": "unpadded"})
    assert method.feature_shape == (64, 19, 19)
    blocks = []
    method.relation.first_norm.register_forward_hook(lambda m, i, o: blocks.append(o.shape[-2:]))
    method.relation.second.register_forward_hook(lambda m, i, o: blocks.append(o.shape[-2:]))
    flat = []
    method.relation.head.register_forward_hook(lambda m, i, o: flat.append(i[0].shape))
    support_x, support_y, query_x, query_y = random_episode(
        n_way=5, k_shot=2, n_query=2, image=(3, 84, 84)
    )
    scores = method(support_x, support_y, query_x)
    assert scores.shape == (10, 5) and bool(((scores > 0) & (scores < 1)).all())
    assert blocks == [torch.Size([17, 17]), torch.Size([6, 6])]  # before each 2x2 pool
    assert flat == [torch.Size([50, 64 * 3 * 3])]
    expected = (128 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + 2 * 128 + (576 * 8 + 8) + (8 + 1)
    assert method.head_parameters() == expected
    method.loss(scores, query_y).backward()
    assert all(p.grad is not None for p in method.parameters())
    method.eval()
    with torch.no_grad():
        factorized = method(support_x, support_y, query_x)
        method.options = RelationNetOptions(relation_layout="unpadded", pairwise="naive")
        naive = method(support_x, support_y, query_x)
    torch.testing.assert_close(factorized, naive, atol=1e-5, rtol=1e-4)


def test_the_unpadded_module_needs_the_image_size_and_maps_large_enough():
    with pytest.raises(ValueError, match="build the backbone with its image size"):
        create_method("relnet", Conv4(3, backbone_config("conv4")), {"relation_layout": "unpadded"})
    small = Conv4(1, backbone_config("conv4"), image_size=28)  # 64x1x1 maps
    with pytest.raises(ValueError, match="too small for the relation module's convolutions"):
        create_method("relnet", small, {"relation_layout": "unpadded"})
