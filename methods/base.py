"""The contract every few-shot method fulfils, and the checks shared by all of them."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from .recipes import PublishedResult, RecipeTable

BOUNDS = "bounds"
"""Key of a field's ``metadata`` holding its :class:`Bounds` (see :func:`bounded`)."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range a numeric option must lie in; ``None`` leaves that side open."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` (``"must be >= 1"``), or None when it is in range."""
        checks = (
            (self.gt, ">", lambda bound: value > bound),
            (self.ge, ">=", lambda bound: value >= bound),
            (self.lt, "<", lambda bound: value < bound),
            (self.le, "<=", lambda bound: value <= bound),
        )
        for bound, symbol, holds in checks:
            if bound is not None and not holds(bound):
                return f"must be {symbol} {bound}"
        return None


def bounded(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field with ``default`` whose values :class:`MethodOptions` checks against the
    bounds, e.g. ``fce_steps: int = bounded(5, ge=1)``."""
    return dataclasses.field(default=default, metadata={BOUNDS: Bounds(gt=gt, ge=ge, lt=lt, le=le)})


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """Options of a method; each method subclasses this with its own typed fields.

    Every field is checked when the options are made: its value must have the field's type
    (``bool``, ``int``, ``float``, ``str``, a ``Literal`` choice, optionally ``| None``; a bool is
    never taken for a number nor a number for a bool, an int is taken for a float and stored as
    one), floats must be finite, and fields made with :func:`bounded` must lie in their range.
    Errors name the option as ``METHOD.FIELD`` with ``METHOD`` from :attr:`method_name`.
    """

    method_name: ClassVar[str] = ""
    """The registry name of the method these options belong to, used in error messages."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            given = value = getattr(self, field.name)
            problem = _type_problem(value, hints[field.name])
            if problem is None and _wants_float(hints[field.name]) and type(value) is int:
                value = _int_as_float(value)
                object.__setattr__(self, field.name, value)
            if problem is None and isinstance(value, float) and not math.isfinite(value):
                problem = "must be a finite number"
            bounds = field.metadata.get(BOUNDS)
            if problem is None and bounds is not None and value is not None:
                problem = bounds.problem(value)
            if problem is not None:
                raise ValueError(f"{self._label(field.name)}={given!r} is not valid: {problem}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _label(self, field_name: str) -> str:
        return f"{self.method_name or type(self).__name__}.{field_name}"


def _type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with the type of ``value`` for a field typed ``hint``, or None.

    Hints other than bool, int, float, str, ``Literal`` and their optional forms are not
    checked.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if value is None and type(None) in members:
            return None
        problems = [_type_problem(value, member) for member in members if member is not type(None)]
        return None if None in problems else problems[0]
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return None
        return "must be one of: " + ", ".join(map(repr, choices))
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an int"
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        return "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    return None


def _wants_float(hint: Any) -> bool:
    """Whether a field typed ``hint`` holds a float (``float`` or ``float | None``)."""
    members = typing.get_args(hint)
    return hint is float or (float in members and int not in members)


def _int_as_float(value: int) -> float:
    """``value`` as a float; infinite (so rejected as not finite) when it is too large for one."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class FewShotMethod(nn.Module):
    """A metric-based few-shot classifier on top of a shared embedding backbone.

    Subclasses set ``name`` and ``Options`` and implement :meth:`scores_from_features` and
    :meth:`loss`; the runner never needs to know which method it drives.

    Args:
        backbone: embedding network mapping ``[B, C, H, W]`` images to ``[B, D, h, w]`` maps and
            exposing ``out_channels`` (= D).
        options: the method's options (``Options`` instance).
    """

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: The method's recipe table: one :class:`~methods.recipes.RecipeEntry` per (preset, dataset
    #: family, backbone), each mapping ``(n_way, k_shot)`` to a :class:`~methods.recipes.Recipe`
    #: and naming the published numbers it aims at. A combination the table lacks is an error
    #: that lists what it has, never a silent fallback.
    #: Published accuracies of the method, which tables compare against (none by default).
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    recipes: ClassVar[RecipeTable] = ()

    def __init__(self, backbone: nn.Module, options: MethodOptions | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise TypeError(
                f"{type(self).__name__} takes {self.Options.__name__}, got {type(self.options)}"
            )

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Score every query against every class of the episode.

        Args:
            support_x: ``[S, C, H, W]`` support images.
            support_y: int64 ``[S]``, labels ``0..N-1``, each label present.
            query_x: ``[Q, C, H, W]`` query images.

        Returns:
            ``[Q, N]`` scores; a higher score means a more likely class.
        """
        n_way = check_episode(support_x, support_y, query_x)
        features = self.backbone(torch.cat([support_x, query_x]))
        support_features, query_features = features.split([len(support_x), len(query_x)])
        return self.scores_from_features(support_features, support_y, query_features, n_way)

    def scores_from_features(
        self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int
    ) -> Tensor:
        """``[Q, N]`` scores from ``[S, D, h, w]`` support and ``[Q, D, h, w]`` query maps."""
        raise NotImplementedError

    def loss(self, scores: Tensor, query_y: Tensor) -> Tensor:
        """Scalar training loss of ``[Q, N]`` scores against int64 ``[Q]`` labels."""
        raise NotImplementedError

    @property
    def feature_channels(self) -> int:
        """D, the channels of the backbone's feature maps."""
        return int(cast(int, self.backbone.out_channels))

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        """``(D, h, w)`` of the backbone's feature map for one image, or ``None`` when the
        backbone does not know its input size (heads sized by the map then assume 1x1 maps or
        say that they need it)."""
        shape = getattr(self.backbone, "feature_shape", None)
        return None if shape is None else (int(shape[0]), int(shape[1]), int(shape[2]))

    @classmethod
    def options_for_backbone(cls, options: dict[str, Any], backbone: str) -> dict[str, Any]:
        """The recipe ``options`` adapted to ``backbone`` when a run replaces the recipe's own
        backbone (``--backbone``); options that only fit the recipe's network are dropped here,
        so the record names what was built. Options the user sets are applied after this."""
        return options

    @classmethod
    def chance_loss(cls, n_way: int, options: MethodOptions) -> float:
        """The training loss of uniform scores over ``n_way`` classes under this method's
        objective with ``options`` (what a model that learned nothing scores): ``ln n_way`` for
        cross-entropy, the default. Used by the training-health verdict."""
        return math.log(n_way)

    def training_head(self, n_classes: int) -> nn.Module:
        """For recipes with the classification protocol: a module mapping backbone features
        ``[B, D, h, w]`` to logits ``[B, n_classes]`` over the training classes, trained with the
        backbone and then dropped. Episodic methods have none."""
        raise NotImplementedError(
            f"{self.name} trains on episodes; it has no classification head for the "
            "classification protocol"
        )

    def on_trained(self, embed_training_images: Callable[[int], Tensor]) -> None:
        """Called once training ends, with ``embed_training_images(count) -> [count, D, h, w]``,
        the features of a seeded sample of training images (for statistics a method keeps, such
        as SimpleShot's centre). Does nothing by default."""

    def head_parameters(self) -> int:
        """Trainable parameters outside the backbone."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return sum(
            p.numel() for p in self.parameters() if p.requires_grad and id(p) not in backbone
        )


def check_episode(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> int:
    """Validate an episode's tensors and return its number of classes N.

    Raises:
        ValueError: with the offending shapes when the tensors do not form an episode.
    """
    if support_x.dim() != 4 or query_x.dim() != 4:
        raise ValueError(
            "support_x and query_x must be image batches [B, C, H, W], got "
            f"{tuple(support_x.shape)} and {tuple(query_x.shape)}"
        )
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            f"support and query images differ in shape: {tuple(support_x.shape[1:])} vs "
            f"{tuple(query_x.shape[1:])}"
        )
    if support_y.dim() != 1 or len(support_y) != len(support_x):
        raise ValueError(
            f"support_y must be [S] with S = {len(support_x)} support images, "
            f"got {tuple(support_y.shape)}"
        )
    if support_y.dtype != torch.int64:
        raise ValueError(f"support_y must be int64 class labels, got {support_y.dtype}")
    n_way = int(support_y.max()) + 1
    if int(support_y.min()) < 0 or int(torch.bincount(support_y, minlength=n_way).min()) == 0:
        raise ValueError(
            f"support_y must use every label 0..N-1 at least once, got labels "
            f"{sorted(set(support_y.tolist()))}"
        )
    return n_way


def class_one_hot(labels: Tensor, n_way: int, dtype: torch.dtype) -> Tensor:
    """``[S, N]`` one-hot matrix of int64 ``[S]`` labels."""
    return nn.functional.one_hot(labels, n_way).to(dtype)


def class_means(features: Tensor, labels: Tensor, n_way: int) -> Tensor:
    """Per-class mean of ``[S, ...]`` features -> ``[N, ...]``."""
    return class_sums(features, labels, n_way) / _counts(labels, n_way, features).view(
        -1, *([1] * (features.dim() - 1))
    )


def class_sums(features: Tensor, labels: Tensor, n_way: int) -> Tensor:
    """Per-class sum of ``[S, ...]`` features -> ``[N, ...]``."""
    one_hot = class_one_hot(labels, n_way, features.dtype)  # [S, N]
    return (one_hot.T @ features.flatten(1)).view(n_way, *features.shape[1:])


def _counts(labels: Tensor, n_way: int, like: Tensor) -> Tensor:
    return torch.bincount(labels, minlength=n_way).to(like.dtype)
