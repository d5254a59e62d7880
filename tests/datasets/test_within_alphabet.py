"""Within-alphabet episodes (Lake et al. 2015): one alphabet per episode, support and query by
different drawers, seeded and paired like random episodes."""

from __future__ import annotations

import pytest
import torch

from datasets import EpisodeSampler, FewShotSplit, WithinGroupSampler
from datasets.omniglot import drawer_of, omniglot_split

#: alphabet -> characters; each character has 6 drawings by drawers 1..6 in file order
ALPHABETS = {"Alpha": 5, "Beta": 4, "Gamma": 2}


def _split() -> FewShotSplit:
    names = [f"{a}/character{c:02d}" for a, n in ALPHABETS.items() for c in range(1, n + 1)]
    n = len(names)
    images = torch.arange(n * 6, dtype=torch.int64).remainder(256).to(torch.uint8)
    return FewShotSplit(
        name="synthetic/alphabets",
        images=images.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous(),
        class_start=torch.arange(n) * 6,
        class_size=torch.full((n,), 6),
        class_rotation=torch.zeros(n, dtype=torch.int64),
        class_names=tuple(names),
        class_group=tuple(name.split("/")[0] for name in names),
        image_drawer=torch.arange(1, 7).repeat(n),
    )


def test_every_episode_draws_its_classes_from_one_alphabet():
    split = _split()
    sampler = WithinGroupSampler(split, 4, 1, 1, seed=0)
    seen = set()
    for i in range(50):
        classes, _ = sampler.draw(i)
        alphabets = {split.class_group[c] for c in classes.tolist()}
        assert len(alphabets) == 1 and len(set(classes.tolist())) == 4
        seen |= alphabets
    assert seen == {"Alpha", "Beta"}  # Gamma has 2 characters: too few for 4-way
    assert sampler.skipped_groups == ("Gamma",)


def test_support_and_query_come_from_different_drawers_shared_across_classes():
    split = _split()
    sampler = WithinGroupSampler(split, 3, 2, 2, seed=1)
    for i in range(30):
        classes, samples = sampler.draw(i)
        starts = split.class_start[classes].unsqueeze(1)
        drawers = split.image_drawer[starts + samples]  # [N, K+Q]
        assert bool((drawers == drawers[0]).all())  # shot j of every class: one drawer
        support, query = set(drawers[0, :2].tolist()), set(drawers[0, 2:].tolist())
        assert len(support) == 2 and len(query) == 2 and not support & query


def test_episodes_are_deterministic_paired_and_a_stream_of_their_own():
    split = _split()
    one, two = (
        WithinGroupSampler(split, 3, 1, 2, seed=0),
        WithinGroupSampler(split, 3, 1, 2, seed=0),
    )
    for i in (0, 7, 3):
        assert all(torch.equal(a, b) for a, b in zip(one.draw(i), two.draw(i)))
        assert torch.equal(one[i].query_x, two[i].query_x)
    other_seed = WithinGroupSampler(split, 3, 1, 2, seed=1)
    assert any(not torch.equal(one.draw(i)[0], other_seed.draw(i)[0]) for i in range(5))
    random_protocol = EpisodeSampler(split, 3, 1, 2, seed=0)
    assert one.episode_seed(0) != random_protocol.episode_seed(0)


def test_a_split_without_alphabets_or_drawers_says_which_protocol_works():
    split = _split()
    plain = FewShotSplit(
        split.name,
        split.images,
        split.class_start,
        split.class_size,
        split.class_rotation,
        split.class_names,
    )
    with pytest.raises(ValueError, match="use --episodes random"):
        WithinGroupSampler(plain, 3, 1, 1)
    with pytest.raises(
        ValueError, match=r"no group of split .* has 6 classes \(the largest has 5\)"
    ):
        WithinGroupSampler(split, 6, 1, 1)


def test_too_few_common_drawers_is_named():
    split = _split()
    drawers = split.image_drawer.clone()
    drawers[5] = 9  # the sixth drawing of Alpha/character01 is by someone else
    split = FewShotSplit(**{**split.__dict__, "image_drawer": drawers})
    sampler = WithinGroupSampler(split, 5, 3, 3, seed=0)  # only Alpha has 5 characters
    with pytest.raises(ValueError, match="have 5 drawers in common, fewer than k_shot"):
        sampler.draw(0)


def test_the_drawer_is_the_number_after_the_underscore():
    assert drawer_of("images_background/Greek/character01/0394_07.png") == 7
    assert drawer_of("images_background/Greek/character01/odd.png") == -1


def test_real_omniglot_evaluation_alphabets_give_lake_episodes(omniglot):
    split = omniglot_split(omniglot, "lake", "test")
    assert split.class_group is not None and split.image_drawer is not None
    assert len(set(split.class_group)) == 20  # the 20 evaluation alphabets
    assert sorted(set(omniglot.drawers.tolist())) == list(range(1, 21))
    sampler = WithinGroupSampler(split, 20, 1, 1, seed=0)
    assert sampler.skipped_groups == ()  # every evaluation alphabet has at least 20 characters
    classes, samples = sampler.draw(0)
    drawers = split.image_drawer[split.class_start[classes].unsqueeze(1) + samples]
    assert len({split.class_group[c] for c in classes.tolist()}) == 1
    assert drawers[:, 0].unique().numel() == 1 and drawers[:, 1].unique().numel() == 1
    assert int(drawers[0, 0]) != int(drawers[0, 1])
