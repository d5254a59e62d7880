"""The registry lists methods, builds them with checked options and rejects typos."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from methods import (
    Conv4,
    FewShotMethod,
    UnknownMethodError,
    available_methods,
    build_options,
    create_method,
    method_summary,
    option_choices,
    register_method,
)
from methods.base import MethodOptions, bounded
from methods.registry import method_class


def test_lists_the_metric_methods_and_the_baselines():
    assert available_methods() == [
        "baseline",
        "baselinepp",
        "matchnet",
        "protonet",
        "relnet",
        "simpleshot",
    ]
    assert all(method_summary(name) for name in available_methods())


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(
        UnknownMethodError,
        match="unknown method 'relnt'; registered methods: baseline, baselinepp, matchnet, protonet, relnet, simpleshot",
    ):
        create_method("relnt", Conv4(1))


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(
        ValueError,
        match="unknown option 'relaton' for method 'relnet'; valid options: relation, aggregate",
    ):
        build_options("relnet", {"relaton": "mlp"})


def test_string_values_are_converted_and_checked():
    options = build_options("matchnet", {"temperature": "5", "fce": "true", "fce_steps": "3"})
    assert (options.temperature, options.fce, options.fce_steps) == (5.0, True, 3)
    assert build_options("relnet", {"relation": "mlp"}).relation == "mlp"
    with pytest.raises(
        ValueError, match="relnet.relation='attention' is not valid; choose one of: conv, mlp"
    ):
        build_options("relnet", {"relation": "attention"})
    with pytest.raises(ValueError, match="matchnet.fce_steps='many' is not a valid int"):
        build_options("matchnet", {"fce_steps": "many"})


def test_typed_values_are_checked_too():
    from methods.relnet import RelationNetOptions

    with pytest.raises(ValueError, match="aggregate='median' is not valid"):
        RelationNetOptions(aggregate="median")


def test_a_new_method_is_one_class_and_one_registration():
    @register_method
    class Nearest(FewShotMethod):
        """Nearest support sample by Euclidean distance."""

        name = "test-nearest"

        def scores_from_features(self, support, support_y, query, n_way):
            return -((query.flatten(1)[:, None] - support.flatten(1)[None]) ** 2).sum(-1)

    try:
        assert "test-nearest" in available_methods()
        assert isinstance(create_method("test-nearest", Conv4(1)), Nearest)
        with pytest.raises(ValueError, match="already registered"):

            @register_method
            class Clash(FewShotMethod):
                name = "test-nearest"
    finally:
        from methods import registry

        registry._METHODS.pop("test-nearest", None)


def test_options_are_listed_with_defaults_first_and_every_choice():
    from methods import option_choices

    relnet = option_choices("relnet")
    assert "relation=conv|mlp" in relnet and "fc_hidden=8" in relnet
    assert "learn_temperature=false" in option_choices("matchnet")
    assert "similarity=cosine|support-normalized" in option_choices("matchnet")
    assert option_choices("protonet") == ["temperature=1.0"]


@pytest.mark.parametrize(
    ("method", "raw", "message"),
    [
        ("matchnet", {"fce_steps": "-3"}, "matchnet.fce_steps=-3 is not valid: must be >= 1"),
        ("matchnet", {"fce_steps": 0}, "matchnet.fce_steps=0 is not valid: must be >= 1"),
        (
            "matchnet",
            {"temperature": "nan"},
            "matchnet.temperature=nan is not valid: must be a finite number",
        ),
        (
            "matchnet",
            {"temperature": float("inf")},
            "matchnet.temperature=inf is not valid: must be a finite number",
        ),
        ("matchnet", {"temperature": "-1"}, "matchnet.temperature=-1.0 is not valid: must be > 0"),
        ("matchnet", {"temperature": 0}, "matchnet.temperature=0 is not valid: must be > 0"),
        ("relnet", {"fc_hidden": 0}, "relnet.fc_hidden=0 is not valid: must be >= 1"),
        ("relnet", {"mlp_hidden": "-256"}, "relnet.mlp_hidden=-256 is not valid: must be >= 1"),
    ],
)
def test_option_values_out_of_range_are_rejected(method, raw, message):
    with pytest.raises(ValueError) as raised:
        build_options(method, raw)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fce_steps": True}, "matchnet.fce_steps=True is not valid: must be an int"),
        ({"fce_steps": 2.0}, "matchnet.fce_steps=2.0 is not valid: must be an int"),
        ({"temperature": False}, "matchnet.temperature=False is not valid: must be a number"),
        ({"fce": 1}, "matchnet.fce=1 is not valid: must be true or false"),
        (
            {"learn_temperature": 0.0},
            "matchnet.learn_temperature=0.0 is not valid: must be true or false",
        ),
        (
            {"similarity": 1},
            "matchnet.similarity=1 is not valid: must be one of: 'cosine', 'support-normalized'",
        ),
    ],
)
def test_typed_values_of_the_wrong_type_are_rejected(raw, message):
    """As a TOML configuration gives them: ``fce_steps = true`` is not 1."""
    with pytest.raises(ValueError) as raised:
        build_options("matchnet", raw)
    assert str(raised.value) == message


def test_typed_values_in_range_are_kept_and_ints_become_floats():
    options = build_options("matchnet", {"temperature": 5, "fce": True, "fce_steps": 1})
    assert options.temperature == 5.0 and isinstance(options.temperature, float)
    assert options.fce is True and options.fce_steps == 1
    assert build_options("relnet", {"fc_hidden": 1, "mlp_hidden": 1}).mlp_hidden == 1


def test_defaults_are_unchanged_and_valid():
    from methods.matchnet import MatchingNetOptions
    from methods.relnet import RelationNetOptions

    assert MatchingNetOptions().as_dict() == {
        "temperature": 10.0,
        "learn_temperature": False,
        "similarity": "cosine",
        "fce": False,
        "fce_steps": 5,
    }
    assert RelationNetOptions().as_dict() == {
        "relation": "conv",
        "aggregate": "sum",
        "loss": "mse",
        "fc_hidden": 8,
        "mlp_hidden": 256,
        "relation_layout": "padded",
        "pairwise": "factorized",
    }
    assert {"fce_steps=5", "temperature=10.0"} <= set(option_choices("matchnet"))


def test_bounds_are_one_generic_mechanism_for_any_method():
    @dataclasses.dataclass(frozen=True)
    class SomeOptions(MethodOptions):
        method_name: ClassVar[str] = "some"

        shrink: float = bounded(0.5, gt=0, le=1)
        ratio: float | None = None
        count: int = 3

    assert SomeOptions(shrink=1).shrink == 1.0 and SomeOptions(ratio=None).ratio is None
    with pytest.raises(ValueError, match=r"^some\.shrink=1\.5 is not valid: must be <= 1$"):
        SomeOptions(shrink=1.5)
    with pytest.raises(
        ValueError, match=r"^some\.ratio=nan is not valid: must be a finite number$"
    ):
        SomeOptions(ratio=float("nan"))  # every float field, bounded or not
    with pytest.raises(ValueError, match=r"^some\.count='3' is not valid: must be an int$"):
        SomeOptions(count="3")


def test_published_numbers_are_declared_beside_each_method_and_gathered_by_the_registry():
    from methods.registry import published_results

    found = published_results()
    relnet = found[("relnet", "omniglot", "vinyals", 5, 1)]
    assert (relnet.accuracy, relnet.ci95) == (99.6, 0.2) and "Sung et al." in relnet.source
    assert found[("baseline", "mini-imagenet", "standard", 5, 5)].accuracy == 62.53
    for (method, *_), result in found.items():
        assert result in method_class(method).published
