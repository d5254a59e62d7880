"""Registry of few-shot methods: names to classes, with options checked by name and type."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from torch import nn

from .base import FewShotMethod
from .recipes import PublishedResult, Recipe, RecipeEntry, find_recipe

_METHODS: dict[str, type[FewShotMethod]] = {}


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def register_method(cls: type[FewShotMethod]) -> type[FewShotMethod]:
    """Class decorator adding ``cls`` under ``cls.name``; a name can be registered once."""
    name = getattr(cls, "name", None)
    if not name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method name {name!r} is already registered by {_METHODS[name]}")
    _METHODS[name] = cls
    return cls


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_METHODS)


def method_class(name: str) -> type[FewShotMethod]:
    """The class registered as ``name``."""
    if name not in _METHODS:
        raise UnknownMethodError(
            f"unknown method {name!r}; registered methods: {', '.join(available_methods())}"
        )
    return _METHODS[name]


def method_summary(name: str) -> str:
    """First line of the method's docstring."""
    doc = method_class(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def option_choices(name: str) -> list[str]:
    """Method ``name``'s options as ``KEY=DEFAULT``, or ``KEY=DEFAULT|OTHER|...`` for a choice."""
    options_cls = method_class(name).Options
    hints = typing.get_type_hints(options_cls)
    described = []
    for field in dataclasses.fields(options_cls):
        default = field.default
        values = [default]
        if typing.get_origin(hints[field.name]) is typing.Literal:
            values += [v for v in typing.get_args(hints[field.name]) if v != default]
        described.append(
            f"{field.name}="
            + "|".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
        )
    return described


def build_options(name: str, raw: dict[str, Any] | None = None) -> Any:
    """The ``Options`` of method ``name`` from a mapping of option names to values or strings.

    Strings are converted to the field's type, so ``{"relation": "mlp", "temperature": "5"}``
    works as well as typed values.

    Raises:
        ValueError: an unknown option (the message lists the valid ones), or a value of the wrong
            type or out of range (checked by :class:`~methods.base.MethodOptions`).
    """
    options_cls = method_class(name).Options
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key not in fields:
            valid = ", ".join(fields) or "(none)"
            raise ValueError(f"unknown option {key!r} for method {name!r}; valid options: {valid}")
        values[key] = _convert(value, hints[key], f"{name}.{key}")
    return options_cls(**values)


def method_recipe(
    name: str, preset: str, family: str, n_way: int, k_shot: int, backbone: str | None = None
) -> Recipe:
    """Method ``name``'s training recipe under ``preset`` for a dataset family at a test setting
    (on ``backbone`` when given: the recipe made for it, or one made for any backbone).

    Raises:
        MissingRecipeError: the method's recipe table has no entry for the combination; the
            message lists the entries it has.
    """
    return recipe_entry(name, preset, family, backbone).make(n_way, k_shot)


def recipe_entry(name: str, preset: str, family: str, backbone: str | None = None) -> RecipeEntry:
    """The row of method ``name``'s recipe table that :func:`method_recipe` uses."""
    return find_recipe(method_class(name).recipes, name, preset, family, backbone)


def create_method(
    name: str, backbone: nn.Module, options: dict[str, Any] | None = None
) -> FewShotMethod:
    """Build method ``name`` on ``backbone`` with the given options (see :func:`build_options`)."""
    return method_class(name)(backbone, build_options(name, options))


def _convert(value: Any, hint: Any, label: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ValueError(f"{label}={value!r} is not valid; choose one of: {choices}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value.lower() in ("none", "null"):
            return None
        hint = args[0]
    try:
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint in (int, float):
            return hint(value)
    except ValueError:
        raise ValueError(f"{label}={value!r} is not a valid {hint.__name__}") from None
    return value


def published_results() -> dict[tuple[str, str, str, int, int], PublishedResult]:
    """Every registered method's published accuracies, by ``(method, dataset, split, n_way,
    k_shot)``."""
    return {
        (name, r.dataset, r.split, r.n_way, r.k_shot): r
        for name in available_methods()
        for r in method_class(name).published
    }
