"""Outputs agree with easyfsl's where the definitions agree (needs the race extra)."""

from __future__ import annotations

import pytest

pytest.importorskip("easyfsl")


def test_protonet_and_relnet_match_easyfsl_on_shared_weights():
    from benchmarks.speed.race import race

    rows = race(rounds=1, settings=[(5, 2)])
    checked = {(r["ours"], r["easyfsl"]) for r in rows if r["outputs_equal"]}
    assert checked == {
        ("protonet", "PrototypicalNetworks"),
        ("relnet (factorized, mean)", "RelationNetworks (our module)"),
    }
    assert all(r["ours_ms"] > 0 and r["easyfsl_ms"] > 0 for r in rows)
