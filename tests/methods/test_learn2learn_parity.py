"""Parity with learn2learn: Prototypical Network scores and the Conv-4 backbones.

- ``learn2learn.nn.PrototypicalClassifier`` returns minus the squared Euclidean distance to the
  class means, as ours does: on the same embeddings the scores are equal, not just the argmax.
- learn2learn's ``CNN4Backbone`` (the miniImageNet Conv-4 of Ravi & Larochelle) has our ``conv4``
  layout block for block (3x3 conv with padding 1, BatchNorm, ReLU, 2x2 max-pool; ours pools
  before the ReLU, which commutes): same parameter count, same 64x5x5 = 1600 features on
  3x84x84, and the same outputs once its weights are copied into ours.
- learn2learn's ``OmniglotCNN`` (Finn et al.'s MAML network) has the same parameter count as our
  ``conv4`` on 1x28x28 but downsamples with stride-2 convolutions instead of max-pools and
  averages the final 64x2x2 map, where ours max-pools to 64x1x1: both give 64 features, but the
  functions differ, so only sizes are compared.
"""

from __future__ import annotations

import pytest
import torch

from methods import BACKBONES, Conv4, count_parameters, create_method
from methods.protonet import PrototypicalNet
from tests.learn2learn_required import learn2learn_or_skip
from tests.methods.helpers import random_episode


@pytest.fixture(scope="module")
def l2l():
    return learn2learn_or_skip()


def test_protonet_scores_equal_prototypical_classifier(l2l):
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(15, 64, 2, 2, generator=generator)
    support_y = torch.arange(5).repeat(3)  # labels interleaved, not grouped
    query = torch.randn(10, 64, 2, 2, generator=generator)
    ours = PrototypicalNet(torch.nn.Identity()).scores_from_features(support, support_y, query, 5)
    theirs = l2l.nn.PrototypicalClassifier(support.flatten(1), support_y)(query.flatten(1))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_protonet_on_conv4_embeddings_equals_prototypical_classifier(l2l):
    method = create_method("protonet", Conv4(3)).eval()
    support_x, support_y, query_x, _ = random_episode(5, 1, 2, image=(3, 84, 84))
    with torch.no_grad():
        scores = method(support_x, support_y, query_x)
        embed = method.backbone
        theirs = l2l.nn.PrototypicalClassifier(embed(support_x).flatten(1), support_y)(
            embed(query_x).flatten(1)
        )
    assert torch.allclose(scores, theirs, rtol=1e-4, atol=1e-3)
    assert torch.equal(scores.argmax(1), theirs.argmax(1))


def _copy_cnn4_into_conv4(theirs: torch.nn.Module, ours: Conv4) -> None:
    for index, block in enumerate(theirs):
        mine = ours.blocks[index]
        mine.conv.load_state_dict(block.conv.state_dict())
        mine.norm.load_state_dict(block.normalize.state_dict())


def test_conv4_matches_learn2learn_cnn4_backbone_on_84x84(l2l):
    theirs = l2l.vision.models.CNN4Backbone(hidden_size=64, channels=3, max_pool=True)
    ours = Conv4(3, BACKBONES["conv4"])
    assert count_parameters(ours) == count_parameters(theirs) == 113088
    images = torch.rand(6, 3, 84, 84, generator=torch.Generator().manual_seed(1))
    _copy_cnn4_into_conv4(theirs, ours)
    for train in (True, False):  # batch statistics, then the running ones (folded into ours)
        theirs.train(train)
        ours.train(train)
        with torch.no_grad():
            expected = theirs(images)
            features = ours(images)
        assert features.shape == (6, 64, 5, 5) and expected.shape == (6, 1600)
        assert torch.allclose(features.flatten(1), expected, rtol=1e-4, atol=1e-4)


def test_conv4_and_learn2learn_omniglot_cnn_sizes(l2l):
    theirs = l2l.vision.models.OmniglotCNN(output_size=5)
    ours = Conv4(1, BACKBONES["conv4"])
    assert count_parameters(ours) == count_parameters(theirs.base) == 111936
    images = torch.rand(4, 1, 28, 28)
    assert theirs.base(images).shape == (4, 64, 2, 2)  # stride-2 convolutions, no pooling
    assert theirs.features(images).shape == (4, 64)
    assert ours(images).shape == (4, 64, 1, 1)


def test_relation_network_layout_runs_on_84x84():
    backbone = Conv4(3, BACKBONES["conv4-relnet"])
    assert backbone.output_shape((3, 84, 84)) == (64, 19, 19)  # the paper's miniImageNet maps
    method = create_method("relnet", backbone)
    support_x, support_y, query_x, query_y = random_episode(2, 1, 1, image=(3, 84, 84))
    method.loss(method(support_x, support_y, query_x), query_y).backward()
    with torch.no_grad():
        assert method.eval()(support_x, support_y, query_x).shape == (2, 2)
