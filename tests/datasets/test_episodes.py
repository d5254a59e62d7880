"""The episode protocol: episode i is a pure function of (seed, split, stream, setting, i)."""

from __future__ import annotations

import pytest
import torch

from datasets import EpisodeSampler
from tests.conftest import numbered_split


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f))
        for f in ("support_x", "support_y", "query_x", "query_y", "class_ids")
    )


def test_same_episode_from_two_samplers_in_any_drawing_order():
    split = numbered_split([20] * 30)
    forward = EpisodeSampler(split, 5, 2, 3, seed=7)
    backward = EpisodeSampler(split, 5, 2, 3, seed=7)
    drawn_forward = [forward[i] for i in range(12)]
    drawn_backward = {i: backward[i] for i in reversed(range(12))}
    for i, episode in enumerate(drawn_forward):
        assert _same(episode, drawn_backward[i])
        assert episode.index == i
    assert _same(forward[3], forward[3])  # drawing again changes nothing


def test_real_omniglot_episode_is_reproducible(omniglot):
    from datasets.omniglot import omniglot_split

    test = omniglot_split(omniglot, "vinyals", "test")
    a = EpisodeSampler(test, 20, 5, 15, seed=0)[599]
    b = EpisodeSampler(omniglot_split(omniglot, "vinyals", "test"), 20, 5, 15, seed=0)[599]
    assert _same(a, b)
    assert a.support_x.shape == (100, 1, 28, 28) and a.query_x.shape == (300, 1, 28, 28)


def test_seed_stream_and_index_each_change_the_episode():
    split = numbered_split([20] * 30)
    base = EpisodeSampler(split, 5, 1, 5, seed=0, stream="test")[0]
    assert not _same(base, EpisodeSampler(split, 5, 1, 5, seed=1, stream="test")[0])
    assert not _same(base, EpisodeSampler(split, 5, 1, 5, seed=0, stream="train")[0])
    assert not _same(base, EpisodeSampler(split, 5, 1, 5, seed=0, stream="test")[1])


def test_episode_invariants():
    sizes = [6 + (i % 5) for i in range(25)]  # unequal sizes, fewer than 256 images
    split = numbered_split(sizes)
    starts = split.class_start.tolist()
    sampler = EpisodeSampler(split, n_way=7, k_shot=2, n_query=4, seed=3)
    for i in range(50):
        e = sampler[i]
        assert e.support_x.shape == (14, 1, 4, 4) and e.query_x.shape == (28, 1, 4, 4)
        assert e.support_y.tolist() == [c for c in range(7) for _ in range(2)]
        assert e.query_y.tolist() == [c for c in range(7) for _ in range(4)]
        assert len(set(e.class_ids.tolist())) == 7
        image_ids = lambda x: (x[:, 0, 0, 0] * 255).round().long().tolist()  # noqa: E731
        support, query = image_ids(e.support_x), image_ids(e.query_x)
        assert not set(support) & set(query), "support and query share an image"
        assert len(set(support)) == len(support) and len(set(query)) == len(query)
        for label, cls in enumerate(e.class_ids.tolist()):
            owned = set(range(starts[cls], starts[cls] + sizes[cls]))
            assert set(support[2 * label : 2 * label + 2]) <= owned
            assert set(query[4 * label : 4 * label + 4]) <= owned


def test_every_image_of_a_small_class_can_be_drawn():
    split = numbered_split([3, 3])
    seen = set()
    for e in EpisodeSampler(split, 2, 1, 2, seed=0).episodes(40):
        seen |= set((e.support_x[:, 0, 0, 0] * 255).round().long().tolist())
    assert seen == set(range(6))


def test_rotated_classes_are_rotated():
    split = numbered_split([2, 2], rotations=[0, 1], side=4)
    split.images[:, :, 0, 0] = 255  # a mark in the top-left corner of every image
    e = EpisodeSampler(split, 2, 1, 1, seed=0)[0]
    for label, cls in enumerate(e.class_ids.tolist()):
        image = e.support_x[label, 0]
        if cls == 0:
            assert image[0, 0] == 1.0
        else:  # a quarter turn counter-clockwise moves top-left to bottom-left
            assert image[-1, 0] == 1.0 and image[0, 0] != 1.0


def test_a_split_moved_to_its_own_device_is_itself_and_gathers_where_its_images_are():
    split = numbered_split([2, 2])
    assert split.to("cpu") is split
    assert split.gather(torch.tensor([1]), torch.tensor([[0, 1]])).device == split.images.device


def test_too_many_ways_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"n_way=20 exceeds the 16 classes of split 'synthetic/numbered'"
    ):
        EpisodeSampler(numbered_split([20] * 16), n_way=20, k_shot=1, n_query=1)


def test_too_many_shots_and_queries_is_a_clear_error():
    with pytest.raises(ValueError, match=r"5 \+ 16 = 21 exceeds the 20 images of class 'class2'"):
        EpisodeSampler(numbered_split([21, 25, 20, 30]), n_way=2, k_shot=5, n_query=16)


@pytest.mark.parametrize("field", ["n_way", "k_shot", "n_query"])
def test_non_positive_sizes_are_rejected(field):
    sizes = {"n_way": 2, "k_shot": 1, "n_query": 1, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be at least 1"):
        EpisodeSampler(numbered_split([5] * 3), **sizes)
