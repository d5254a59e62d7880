"""Few-shot methods as plug-ins: a base class, a registry and one module per method.

Adding a method: write one module with a :class:`FewShotMethod` subclass decorated with
:func:`register_method`, with its training recipes in its ``recipes``, and import it below.
"""

from . import baseline, baselinepp, matchnet, protonet, relnet, simpleshot  # noqa: F401
from .backbones import (
    BACKBONE_NAMES,
    BACKBONES,
    Conv4,
    Conv4Config,
    backbone_config,
    build_backbone,
    count_parameters,
)
from .base import FewShotMethod, MethodOptions, check_episode
from .recipes import MissingRecipeError, Recipe, TrainConfig
from .registry import (
    UnknownMethodError,
    available_methods,
    build_options,
    create_method,
    method_class,
    method_recipe,
    method_summary,
    option_choices,
    register_method,
)

__all__ = [
    "BACKBONE_NAMES",
    "BACKBONES",
    "Conv4",
    "Conv4Config",
    "FewShotMethod",
    "MethodOptions",
    "MissingRecipeError",
    "Recipe",
    "TrainConfig",
    "UnknownMethodError",
    "available_methods",
    "backbone_config",
    "build_backbone",
    "build_options",
    "check_episode",
    "count_parameters",
    "create_method",
    "method_class",
    "method_recipe",
    "method_summary",
    "option_choices",
    "register_method",
]
