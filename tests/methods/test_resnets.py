"""ResNet-12 and ResNet-18: shapes, parameter counts, parity with learn2learn and torchvision,
and every method on every backbone.

Where our ResNet-12 and learn2learn's ``ResNet12Backbone`` (MetaOptNet widths) agree: the
layers, their order and initialisation scheme, the widths, dropout 0.1 in blocks 1-2 and DropBlock
(rate 0.1, block 5, rate ramped over 40,000 steps) in blocks 3-4, average pooling of the 640x5x5
map. Where they differ (training mode only): learn2learn counts DropBlock's steps in a Python
attribute that checkpoints lose, ours in a buffer saved with the weights; learn2learn draws its
mask with ``torch.distributions.Bernoulli`` and grows blocks by index arithmetic, ours with
``torch.bernoulli`` and a max-pool, so the same seed gives other masks (same distribution).
"""

from __future__ import annotations

import pytest
import torch

from methods import build_backbone, count_parameters, create_method
from methods.resnets import DropBlock, ResNet12
from tests.learn2learn_required import learn2learn_or_skip
from tests.methods.helpers import random_episode


def test_resnet12_has_the_standard_widths_shapes_and_12_4m_parameters():
    network = build_backbone("resnet12", 3, 84)
    assert count_parameters(network) == 12_424_320
    assert network.feature_shape == (640, 1, 1)
    assert isinstance(network, ResNet12) and network.map_shape(84) == (640, 5, 5)
    network.eval()
    with torch.no_grad():
        assert network(torch.randn(2, 3, 84, 84)).shape == (2, 640, 1, 1)


def test_resnet18_is_torchvisions_without_its_classifier():
    from torchvision.models import resnet18

    ours = build_backbone("resnet18", 3, 84).eval()
    reference = resnet18(weights=None)
    reference.fc = torch.nn.Identity()
    reference.load_state_dict(ours.network.state_dict())
    reference.eval()
    images = torch.randn(2, 3, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(ours(images).flatten(1), reference(images))
    assert count_parameters(ours) == count_parameters(resnet18(weights=None)) - (512 * 1000 + 1000)
    assert count_parameters(ours) == 11_176_512


def test_resnet12_equals_learn2learns_with_copied_weights():
    l2l = learn2learn_or_skip()
    torch.manual_seed(0)
    theirs = l2l.vision.models.resnet12.ResNet12Backbone(avg_pool=True, wider=True, channels=3)
    for module in theirs.modules():  # running statistics other than the defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    ours = ResNet12(3, 84)
    assert count_parameters(ours) == count_parameters(theirs)
    mine = {k: v for k, v in ours.state_dict().items() if not k.endswith("drop_block.steps")}
    assert len(mine) == len(theirs.state_dict())
    copied = {}
    for (key, value), (their_key, their_value) in zip(mine.items(), theirs.state_dict().items()):
        assert value.shape == their_value.shape, (key, their_key)
        copied[key] = their_value
    ours.load_state_dict(copied, strict=False)
    ours.eval(), theirs.eval()
    images = torch.randn(3, 3, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(ours(images).flatten(1), theirs(images), atol=1e-5, rtol=1e-4)


def test_dropblock_drops_square_blocks_in_training_only_and_keeps_the_expected_sum():
    torch.manual_seed(0)
    block = DropBlock(drop_rate=0.3, block_size=3, ramp_steps=1)
    x = torch.ones(64, 4, 11, 11)
    block.train()
    out = block(x)
    assert int(block.steps) == 1
    dropped = out == 0
    assert dropped.any() and not dropped.all()
    assert abs(float(out.mean()) - 1.0) < 0.05  # rescaled
    # every dropped position lies in a 3x3 square of dropped positions
    padded = torch.nn.functional.pad(dropped.float(), (2, 2, 2, 2))
    squares = torch.nn.functional.avg_pool2d(padded, 3, stride=1) == 1.0  # all 9 dropped
    covered = torch.nn.functional.max_pool2d(squares.float(), 3, stride=1, padding=1)[
        ..., 1:-1, 1:-1
    ]
    assert bool((covered[dropped] == 1).all())
    block.eval()
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("backbone", ["resnet12", "resnet18"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("protonet", {}), ("relnet", {}), ("matchnet", {"fce": True, "fce_steps": 1})],
)
def test_every_method_trains_and_tests_on_the_deeper_backbones(backbone, method, options):
    torch.manual_seed(0)
    model = create_method(method, build_backbone(backbone, 3, 32), options)
    support_x, support_y, query_x, query_y = random_episode(3, 2, 2, image=(3, 32, 32))
    model.train()
    scores = model(support_x, support_y, query_x)
    model.loss(scores, query_y).backward()
    assert scores.shape == (6, 3)
    model.eval()
    with torch.no_grad():
        assert model(support_x, support_y, query_x).shape == (6, 3)
