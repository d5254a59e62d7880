"""The episode protocol: a seeded sampler whose episode ``i`` is a pure function of its inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .augment import augmentation, augmented
from .store import FewShotSplit


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task.

    Attributes:
        support_x: float ``[N*K, C, H, W]``, grouped by class (K images of label 0 first).
        support_y: int64 ``[N*K]``, labels in ``0..N-1``.
        query_x: float ``[N*Q, C, H, W]``, grouped by class like the support set.
        query_y: int64 ``[N*Q]``, labels in ``0..N-1``.
        class_ids: int64 ``[N]``, the split's class index behind each label.
        index: the episode's index in its stream.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    class_ids: Tensor
    index: int

    def to(self, device: torch.device | str) -> Episode:
        """The same episode with its tensors on ``device`` (no copy when already there)."""
        return Episode(
            self.support_x.to(device, non_blocking=True),
            self.support_y.to(device, non_blocking=True),
            self.query_x.to(device, non_blocking=True),
            self.query_y.to(device, non_blocking=True),
            self.class_ids,
            self.index,
        )


class EpisodeSampler:
    """Draws N-way K-shot episodes from one split, reproducibly.

    Episode ``i`` depends only on ``(seed, split.name, stream, n_way, k_shot, n_query, i)``: not
    on which episodes were drawn before, on the method, the process or the executor. Two methods
    given samplers with the same arguments therefore see identical episodes, which is what makes
    their comparison paired.

    Args:
        split: the class-indexed images to draw from.
        n_way: classes per episode.
        k_shot: support images per class.
        n_query: query images per class; support and query never share an image.
        seed: the experiment seed.
        stream: a name that separates independent episode streams over the same split
            (``"train"``, ``"val"``, ``"test"``).
        augment: the name of an augmentation policy (``datasets.augment.POLICIES``) applied to
            every image of an episode, seeded by the episode, or ``None`` (the default).

    Raises:
        ValueError: when the split has fewer than ``n_way`` classes or some class has fewer
            than ``k_shot + n_query`` images.
    """

    def __init__(
        self,
        split: FewShotSplit,
        n_way: int,
        k_shot: int,
        n_query: int,
        seed: int = 0,
        stream: str = "test",
        augment: str | None = None,
    ) -> None:
        for label, value in (("n_way", n_way), ("k_shot", k_shot), ("n_query", n_query)):
            if int(value) < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        if n_way > split.num_classes:
            raise ValueError(
                f"n_way={n_way} exceeds the {split.num_classes} classes of split {split.name!r}; "
                f"choose n_way <= {split.num_classes} or a split with more classes"
            )
        smallest = int(split.class_size.min())
        if k_shot + n_query > smallest:
            worst = split.class_names[int(split.class_size.argmin())]
            raise ValueError(
                f"k_shot + n_query = {k_shot} + {n_query} = {k_shot + n_query} exceeds the "
                f"{smallest} images of class {worst!r} in split {split.name!r}; "
                f"lower k_shot or n_query so that they sum to at most {smallest}"
            )
        self.split = split
        self.n_way = int(n_way)
        self.k_shot = int(k_shot)
        self.n_query = int(n_query)
        self.seed = int(seed)
        self.stream = stream
        self._augmentation = None if augment is None else augmentation(augment)
        self._max_size = int(split.class_size.max())
        self._support_y = torch.arange(self.n_way).repeat_interleave(self.k_shot)
        self._query_y = torch.arange(self.n_way).repeat_interleave(self.n_query)

    #: The episode protocol's name; any other protocol than ``"random"`` is part of every
    #: episode's seed, so that its episodes are a stream of their own.
    protocol = "random"

    def episode_seed(self, index: int) -> int:
        """The 63-bit generator seed of episode ``index``."""
        key = (
            f"{self.seed}|{self.split.name}|{self.stream}|"
            f"{self.n_way}|{self.k_shot}|{self.n_query}|{index}"
        )
        if self.protocol != "random":
            key += f"|{self.protocol}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & ((1 << 63) - 1)

    def draw(self, index: int) -> tuple[Tensor, Tensor]:
        """Which images episode ``index`` holds, without reading them: ``(class_ids [N],
        sample_ids [N, K+Q])``, the split's class indices and each class's samples (the first K
        are the support set)."""
        if index < 0:
            raise IndexError(f"episode index must be non-negative, got {index}")
        generator = torch.Generator().manual_seed(self.episode_seed(index))
        class_ids = torch.randperm(self.split.num_classes, generator=generator)[: self.n_way]
        # A random key per (class, sample); samples past a class's size can never be chosen.
        keys = torch.rand(self.n_way, self._max_size, generator=generator)
        sizes = self.split.class_size[class_ids].unsqueeze(1)
        keys.masked_fill_(torch.arange(self._max_size).unsqueeze(0) >= sizes, 2.0)
        return class_ids, keys.argsort(dim=1)[:, : self.k_shot + self.n_query]

    @property
    def labels(self) -> tuple[Tensor, Tensor]:
        """``(support_y [N*K], query_y [N*Q])`` of every episode."""
        return self._support_y, self._query_y

    def __getitem__(self, index: int) -> Episode:
        class_ids, sample_ids = self.draw(index)
        pixels = self.split.gather_pixels(class_ids, sample_ids)  # [N, K+Q, C, H, W]
        seed = self.episode_seed(index)
        images = self.split.as_model_input(augmented(self._augmentation, pixels, seed))
        support = images[:, : self.k_shot].flatten(0, 1)
        query = images[:, self.k_shot :].flatten(0, 1)
        return Episode(support, self._support_y, query, self._query_y, class_ids, index)

    def episodes(self, count: int, start: int = 0) -> Iterator[Episode]:
        """Episodes ``start .. start + count - 1`` in order."""
        for index in range(start, start + count):
            yield self[index]


class WithinGroupSampler(EpisodeSampler):
    """Episodes in the manner of Lake et al. (2015): the N classes of an episode belong to one
    group (Omniglot: one alphabet, so they look alike), and every support image of the episode
    comes from other drawers than every query image.

    Episode ``i`` draws a group uniformly among the groups with at least ``n_way`` classes (the
    others are listed in :attr:`skipped_groups`), ``n_way`` of its classes, then ``k_shot +
    n_query`` drawers who drew every one of them: shot ``j`` of each class is by support drawer
    ``j``, query ``j`` by query drawer ``j``. Seeding and pairing are those of
    :class:`EpisodeSampler` (the protocol is part of the seed).

    Raises:
        ValueError: the split has no groups or drawers, no group is large enough, or the chosen
            classes have fewer common drawers than ``k_shot + n_query``.
    """

    protocol = "within-alphabet"

    def __init__(
        self,
        split: FewShotSplit,
        n_way: int,
        k_shot: int,
        n_query: int,
        seed: int = 0,
        stream: str = "test",
    ) -> None:
        super().__init__(split, n_way, k_shot, n_query, seed, stream)
        if split.class_group is None or split.image_drawer is None:
            raise ValueError(
                f"split {split.name!r} does not say which group (alphabet) each class belongs to "
                "and who drew each image, which within-alphabet episodes need; use "
                "--episodes random"
            )
        members: dict[str, list[int]] = {}
        for index, group in enumerate(split.class_group):
            members.setdefault(group, []).append(index)
        self.groups = [torch.tensor(c) for _, c in sorted(members.items()) if len(c) >= n_way]
        self.skipped_groups = tuple(sorted(g for g, c in members.items() if len(c) < n_way))
        if not self.groups:
            largest = max(len(c) for c in members.values())
            raise ValueError(
                f"no group of split {split.name!r} has {n_way} classes (the largest has "
                f"{largest}); lower --ways"
            )
        # drawer -> sample index, per class
        self._by_drawer: list[dict[int, int]] = []
        for start, size in zip(split.class_start.tolist(), split.class_size.tolist()):
            drawers = split.image_drawer[start : start + size].tolist()
            self._by_drawer.append({d: s for s, d in enumerate(drawers) if d >= 0})

    def draw(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            raise IndexError(f"episode index must be non-negative, got {index}")
        generator = torch.Generator().manual_seed(self.episode_seed(index))
        group = self.groups[int(torch.randint(len(self.groups), (1,), generator=generator))]
        class_ids = group[torch.randperm(len(group), generator=generator)[: self.n_way]]
        common = sorted(set.intersection(*(set(self._by_drawer[c]) for c in class_ids.tolist())))
        needed = self.k_shot + self.n_query
        if len(common) < needed:
            names = ", ".join(self.split.class_names[c] for c in class_ids.tolist()[:3])
            raise ValueError(
                f"episode {index}: the classes {names}, ... have {len(common)} drawers in "
                f"common, fewer than k_shot + n_query = {needed}"
            )
        order = torch.randperm(len(common), generator=generator)[:needed].tolist()
        drawers = [common[j] for j in order]
        sample_ids = torch.tensor(
            [[self._by_drawer[c][d] for d in drawers] for c in class_ids.tolist()],
            dtype=torch.int64,
        )
        return class_ids, sample_ids


#: Test-episode protocols: name -> sampler class.
EPISODE_PROTOCOLS: dict[str, type[EpisodeSampler]] = {
    "random": EpisodeSampler,
    "within-alphabet": WithinGroupSampler,
}


class ClassificationBatches:
    """Mini-batches for ordinary classification over every class of a split, reproducibly.

    Batch ``i`` holds ``batch_size`` images drawn uniformly (with replacement across batches,
    without within one) from all the split's images; it depends only on ``(seed, split.name,
    batch_size, i)``. Labels are the split's class indices. With ``augment`` (a policy of
    ``datasets.augment.POLICIES``), each batch's images are augmented, seeded by the batch.
    """

    def __init__(
        self, split: FewShotSplit, batch_size: int, seed: int = 0, augment: str | None = None
    ) -> None:
        total = int(split.class_size.sum())
        if batch_size < 1 or batch_size > total:
            raise ValueError(
                f"batch_size must lie in 1..{total} (the images of split {split.name!r}), "
                f"got {batch_size}"
            )
        self.split = split
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._augmentation = None if augment is None else augmentation(augment)
        self._ends = torch.cumsum(split.class_size, 0)
        self._total = total

    def batch_seed(self, index: int) -> int:
        key = f"{self.seed}|{self.split.name}|classification|{self.batch_size}|{index}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & ((1 << 63) - 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """``(images float [B, C, H, W], labels int64 [B])`` of batch ``index``."""
        if index < 0:
            raise IndexError(f"batch index must be non-negative, got {index}")
        generator = torch.Generator().manual_seed(self.batch_seed(index))
        flat = torch.randperm(self._total, generator=generator)[: self.batch_size]
        classes = torch.searchsorted(self._ends, flat, right=True)
        samples = flat - (self._ends[classes] - self.split.class_size[classes])
        pixels = self.split.gather_pixels(classes, samples.unsqueeze(1)).squeeze(1)
        seed = self.batch_seed(index)
        return self.split.as_model_input(augmented(self._augmentation, pixels, seed)), classes
