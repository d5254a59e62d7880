"""The registry lists methods, builds them with checked options and rejects typos."""

from __future__ import annotations

import pytest

from methods import (
    Conv4,
    FewShotMethod,
    UnknownMethodError,
    available_methods,
    build_options,
    create_method,
    method_summary,
    register_method,
)


def test_lists_the_three_methods():
    assert available_methods() == ["matchnet", "protonet", "relnet"]
    assert all(method_summary(name) for name in available_methods())


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UnknownMethodError, match="unknown method 'relnt'; registered methods: matchnet, protonet, relnet"):
        create_method("relnt", Conv4(1))


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(ValueError, match="unknown option 'relaton' for method 'relnet'; valid options: relation, aggregate"):
        build_options("relnet", {"relaton": "mlp"})


def test_string_values_are_converted_and_checked():
    options = build_options("matchnet", {"temperature": "5", "fce": "true", "fce_steps": "3"})
    assert (options.temperature, options.fce, options.fce_steps) == (5.0, True, 3)
    assert build_options("relnet", {"relation": "mlp"}).relation == "mlp"
    with pytest.raises(ValueError, match="relnet.relation='attention' is not valid; choose one of: conv, mlp"):
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
    assert option_choices("protonet") == []
