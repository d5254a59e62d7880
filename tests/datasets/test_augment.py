"""Augmentation: batched on uint8 pixels, identical for the same seed, different for another."""

from __future__ import annotations

import pytest
import torch

from datasets import ClassificationBatches, EpisodeSampler
from datasets.augment import POLICIES, augment_seed, augmentation, colour_jitter, pad_crop
from tests.conftest import numbered_split


def _photos(count: int = 8, side: int = 12) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, 3, side, side), generator=torch.Generator().manual_seed(0)
    ).to(torch.uint8)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_policy_keeps_shape_and_dtype_and_is_a_function_of_its_seed(name):
    images = _photos()
    policy = augmentation(name)
    first = policy(images, augment_seed(1))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, policy(images, augment_seed(1)))
    assert not torch.equal(first, policy(images, augment_seed(2)))


def test_pad_crop_shifts_each_image_within_the_padding():
    images = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(50, 1, 1, 1)
    cropped = pad_crop(images, augment_seed(0), padding=1)
    shifted = [not torch.equal(c, images[0]) for c in cropped]
    assert any(shifted) and not all(shifted)  # 9 offsets, one of them the identity
    for crop in cropped:  # every crop is a window of the zero-padded image
        padded = torch.nn.functional.pad(images[0], (1, 1, 1, 1))
        windows = [padded[:, y : y + 4, x : x + 4] for y in range(3) for x in range(3)]
        assert any(torch.equal(crop, w) for w in windows)


def test_colour_jitter_of_strength_zero_changes_nothing():
    images = _photos()
    assert torch.equal(colour_jitter(images, augment_seed(0), strength=0.0), images)


def test_an_unknown_policy_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match="mixup.*crop-flip"):
        augmentation("mixup")


def test_augmented_episodes_and_batches_are_reproducible_and_differ_from_plain_ones():
    split = numbered_split([10] * 6, side=12)
    plain = EpisodeSampler(split, 3, 1, 2, seed=0, stream="train")
    one = EpisodeSampler(split, 3, 1, 2, seed=0, stream="train", augment="crop-flip")
    two = EpisodeSampler(split, 3, 1, 2, seed=0, stream="train", augment="crop-flip")
    assert torch.equal(one[4].query_x, two[4].query_x)
    assert torch.equal(one[4].class_ids, plain[4].class_ids)  # the same images are drawn
    assert not torch.equal(one[4].query_x, plain[4].query_x)
    other_seed = EpisodeSampler(split, 3, 1, 2, seed=1, stream="train", augment="crop-flip")
    assert not torch.equal(one[4].query_x, other_seed[4].query_x)
    batches = ClassificationBatches(split, 8, seed=0, augment="crop-flip")
    assert torch.equal(batches[3][0], ClassificationBatches(split, 8, 0, "crop-flip")[3][0])
    assert not torch.equal(batches[3][0], ClassificationBatches(split, 8, 0)[3][0])
