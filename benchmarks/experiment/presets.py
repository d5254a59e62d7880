"""Presets: named families of training recipes. The recipes themselves belong to the methods
(``FewShotMethod.recipes``); a preset names them and says what they are for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datasets.registry import dataset_spec
from methods.recipes import Recipe
from methods.registry import method_recipe


@dataclass(frozen=True)
class Preset:
    """A named family of recipes.

    Attributes:
        name: registry key, and the key of each method's recipe for it.
        summary: one line for ``--list``.
    """

    name: str
    summary: str

    def recipe(
        self,
        method: str,
        n_way: int,
        k_shot: int,
        dataset: str = "omniglot",
        backbone: str | None = None,
    ) -> Recipe:
        """``method``'s recipe under this preset for ``dataset``'s family at a test setting (on
        ``backbone`` when given).

        Raises:
            methods.registry.MissingRecipeError: the method has no recipe for this preset, the
                dataset's family and the backbone; the message lists those it has.
        """
        family = dataset_spec(dataset).family
        return method_recipe(method, self.name, family, n_way, k_shot, backbone)


_PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "quick",
            "default; 1,000 training episodes (20-way, 5 queries), minutes per model "
            "on a 2-core CPU",
        ),
        Preset(
            "paper", "each method's published training recipe (up to 1M episodes); meant for a GPU"
        ),
        Preset(
            "pretrained-cpu",
            "natural images: one shared Conv-4 pre-trained as a classifier over the training "
            "classes (augmented, SGD, 16 epochs), then each method trained from it; sized for a "
            "2-core CPU",
        ),
        Preset(
            "paper-cpu",
            "the published recipes shortened for a CPU (about 2.2 core-hours for "
            "all 12 Omniglot cells); one model per method and shot serves 5- and 20-way tests",
        ),
    )
}


def available_presets() -> list[str]:
    return list(_PRESETS)


def preset(name: str) -> Preset:
    """The preset registered as ``name``; the error lists the valid names."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(_PRESETS)}")
    return _PRESETS[name]


def with_overrides(recipe: Recipe, **train_overrides: Any) -> Recipe:
    """``recipe`` with the given TrainConfig fields replaced (``None`` values are ignored)."""
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **changes))
