"""The model zoo: every shipped model matches a committed record and re-tests to it; weights are
checked before they are read; a user loads a model in one call."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from benchmarks.reporting.tables import load_records
from benchmarks.zoo import ZooError, entries, load
from benchmarks.zoo.__main__ import main
from benchmarks.zoo.catalogue import RESULTS, sha256, unshipped_file, weights_path
from benchmarks.zoo.export import NOT_A_PRESET_CELL, NOT_KEPT, export
from benchmarks.zoo.retest import retest

OMNIGLOT_PROTONET = "protonet-omniglot-vinyals-quick-5w1s-seed0"
CPU = torch.device("cpu")


def test_list_shows_the_shipped_models_with_their_records_accuracy(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    models = entries()
    assert len(models) >= 18 and sum(m.dataset == "mini-imagenet" for m in models) >= 6
    assert all(m.name in out for m in models)
    assert f"{100 * entries()[0].accuracy:.2f}" in out


def test_every_shipped_model_is_a_committed_record_and_every_shown_record_is_accounted_for():
    shown = load_records(RESULTS).set_index("config_hash")
    models = entries()
    for model in models:
        record = shown.loc[model.config_hash]
        assert (record["accuracy"], record["ci95"]) == (model.accuracy, model.ci95), model.name
        assert record["training_hash"] == model.training_hash, model.name
        path = weights_path(RESULTS, model)
        assert path.stat().st_size == model.size and sha256(path) == model.sha256, model.name
    unshipped = [
        u["config_hash"]
        for dataset in set(shown["dataset"])
        for u in json.loads(unshipped_file(RESULTS, dataset).read_text())
    ]
    assert sorted([m.config_hash for m in models] + unshipped) == sorted(shown.index)
    total = sum({weights_path(RESULTS, m): m.size for m in models}.values())
    assert total < 60 * 2**20


def test_a_shipped_omniglot_model_re_tests_to_its_record(omniglot, data_root, capsys):
    threads = torch.get_num_threads()
    model = {m.name: m for m in entries()}[OMNIGLOT_PROTONET]
    torch.set_num_threads(model.num_threads)
    try:
        code = main(["test", OMNIGLOT_PROTONET, "--test-episodes", "40", "--device", "cpu",
                     "--data-root", str(data_root)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0 and "matches its record (every per-episode accuracy is identical)" in out


def test_altered_or_missing_weights_are_refused_with_the_file_named(tmp_path):
    model = {m.name: m for m in entries()}[OMNIGLOT_PROTONET]
    results = tmp_path / "results"
    shutil.copytree(RESULTS / "omniglot" / "models", results / "omniglot" / "models")
    path = weights_path(results, model)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ZooError, match=f"{path}.*not the file the zoo shipped"):
        load(OMNIGLOT_PROTONET, results)
    path.unlink()
    with pytest.raises(ZooError, match="missing"):
        load(OMNIGLOT_PROTONET, results)


def test_an_unknown_model_is_a_clear_error(capsys):
    assert main(["test", "protonet-omniglot-nosuch"]) == 2
    assert "no model named 'protonet-omniglot-nosuch'" in capsys.readouterr().err


def test_a_re_test_beyond_the_records_episodes_is_refused(data_root):
    model = {m.name: m for m in entries()}[OMNIGLOT_PROTONET]
    with pytest.raises(ZooError, match="--test-episodes must be in 1..600"):
        retest(model, str(data_root), CPU, episodes=601)


def test_a_changed_recipe_or_other_data_refuses_the_re_test(data_root):
    model = {m.name: m for m in entries()}[OMNIGLOT_PROTONET]
    with pytest.raises(ZooError, match="no longer what today's recipes give"):
        retest(dataclasses.replace(model, config_hash="0" * 16), str(data_root), CPU, 2)
    with pytest.raises(ZooError, match="is not the data of its record"):
        retest(dataclasses.replace(model, data="other-images"), str(data_root), CPU, 2)


def test_a_new_record_is_exported_with_its_weights_and_re_tests_to_itself(
    omniglot, data_root, tmp_path, monkeypatch
):
    """A preset cell as it is (ProtoNet quick, 1,000 episodes: about 30 s on 2 cores) ships; a
    cell made with recipe-changing flags, or whose weights are gone, is listed as unshipped."""
    from benchmarks.run import main as run

    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    out = tmp_path / "results"
    common = ["--methods", "protonet", "--test-episodes", "5", "--out", str(out), "--quiet"]
    assert run([*common, "--shots", "1", "--device", "cpu"]) == 0
    assert run([*common, "--shots", "5", "--device", "cpu", "--train-episodes", "2"]) == 0
    models, unshipped = export(out, str(data_root))
    (model,) = models
    assert model.name == OMNIGLOT_PROTONET and model.test_episodes == 5
    assert [u["reason"] for u in unshipped] == [NOT_A_PRESET_CELL]
    assert json.loads(unshipped_file(out, "omniglot").read_text()) == unshipped
    assert export(out, str(data_root))[0] == [model]  # exporting again changes nothing
    found = retest(model, str(data_root), CPU, results=out)
    assert found.identical and found.matches and found.recorded == model.accuracy

    shutil.rmtree(out / "omniglot" / "models")
    shutil.rmtree(out / "omniglot" / "checkpoints")
    models, unshipped = export(out, str(data_root))
    assert models == [] and [u["reason"] for u in unshipped] == [NOT_KEPT, NOT_KEPT]
