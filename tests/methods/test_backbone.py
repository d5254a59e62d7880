"""Conv-4: one class, configurable pooling and padding, any input size and channel count."""

from __future__ import annotations

import pytest
import torch

from methods import Conv4, Conv4Config, backbone_config, count_parameters


@pytest.mark.parametrize(
    ("layout", "image", "expected"),
    [
        ("conv4", (1, 28, 28), (64, 1, 1)),
        ("conv4", (3, 84, 84), (64, 5, 5)),
        ("conv4-relnet", (1, 28, 28), (64, 5, 5)),
        ("conv4-relnet", (3, 84, 84), (64, 19, 19)),
    ],
)
def test_feature_map_shapes(layout, image, expected):
    net = Conv4(image[0], backbone_config(layout))
    out = net(torch.randn(2, *image))
    assert out.shape == (2, *expected)
    assert net.output_shape(image) == expected


def test_parameter_count_matches_the_architecture():
    # block 1: conv 1->64 (9*64 weights + 64 biases) + BatchNorm (64 + 64); blocks 2-4: 64->64.
    first = 1 * 64 * 9 + 64 + 128
    later = 64 * 64 * 9 + 64 + 128
    assert count_parameters(Conv4(1)) == first + 3 * later
    assert count_parameters(Conv4(1, backbone_config("conv4-relnet"))) == first + 3 * later


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expects images \[B, 3, H, W\], got \(2, 1, 28, 28\)"):
        Conv4(3)(torch.randn(2, 1, 28, 28))


def test_too_small_input_is_reported():
    with pytest.raises(ValueError, match="too small"):
        Conv4(1).output_shape((1, 8, 8))


def test_bad_layout_and_unknown_name():
    with pytest.raises(ValueError, match="4 pool flags and 4 paddings"):
        Conv4Config(pool=(True, True))
    with pytest.raises(ValueError, match="valid: conv4, conv4-relnet"):
        backbone_config("resnet12")


def _reference(net: Conv4) -> torch.nn.Sequential:
    """The textbook block order (conv, BatchNorm, ReLU, pool) with ``net``'s own layers."""
    layers = []
    for block in net.blocks:
        layers += [block.conv, block.norm, torch.nn.ReLU()]
        if block.pool:
            layers.append(torch.nn.MaxPool2d(2))
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("layout", ["conv4", "conv4-relnet"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_blocks_equal_the_textbook_order_in_train_and_eval(layout, channels_last):
    torch.manual_seed(0)
    net = Conv4(3, backbone_config(layout), channels_last=channels_last)
    images = torch.randn(6, 3, 40, 40)
    net.train()
    assert torch.allclose(net(images), _reference(net)(images), atol=1e-5)
    net(torch.randn(16, 3, 40, 40))  # non-trivial running statistics
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(images), _reference(net)(images), atol=1e-5)


def test_chunked_evaluation_gives_the_same_features():
    torch.manual_seed(0)
    chunked = Conv4(1, cpu_eval_chunk_bytes=3 * 4 * 64 * 28 * 28)  # 3 images per chunk
    whole = Conv4(1, cpu_eval_chunk_bytes=2**40)
    chunked.train()(torch.randn(16, 1, 28, 28))  # non-trivial running statistics
    whole.load_state_dict(chunked.state_dict())
    images = torch.randn(10, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(chunked.eval()(images), whole.eval()(images), atol=1e-6)
        # in training mode BatchNorm needs the whole batch: no chunking there
        assert torch.allclose(chunked.train()(images), whole.train()(images), atol=1e-6)
