"""The plan: cells, their config hashes, and training shared between cells."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.experiment.cells import group_by_training
from benchmarks.experiment.config import RunConfig, UsageError, plan_cells


def test_one_cell_per_method_way_shot_and_seed():
    cells = plan_cells(
        RunConfig(methods=("protonet", "relnet"), ways=(5, 20), shots=(1, 5), seeds=(0, 1)), "cpu"
    )
    assert len(cells) == 2 * 2 * 2 * 2
    assert {c.setting for c in cells} == {
        "5-way 1-shot",
        "5-way 5-shot",
        "20-way 1-shot",
        "20-way 5-shot",
    }
    assert len({c.config_hash for c in cells}) == len(cells)


def test_config_hash_is_stable_and_sees_every_field():
    a = plan_cells(RunConfig(methods=("relnet",), shots=(1,)), "cpu")[0]
    b = plan_cells(RunConfig(methods=("relnet",), shots=(1,)), "cpu")[0]
    assert a.config_hash == b.config_hash
    changed = [
        plan_cells(
            RunConfig(methods=("relnet",), shots=(1,), options=("relnet.relation=mlp",)), "cpu"
        )[0],
        plan_cells(RunConfig(methods=("relnet",), shots=(1,), train_episodes=7), "cpu")[0],
        plan_cells(RunConfig(methods=("relnet",), shots=(1,), test_episodes=100), "cpu")[0],
        plan_cells(RunConfig(methods=("relnet",), shots=(1,), val_episodes=3), "cpu")[0],
        plan_cells(RunConfig(methods=("relnet",), shots=(1,)), "cuda")[0],
        dataclasses.replace(a, seed=1),
    ]
    assert len({a.config_hash, *(c.config_hash for c in changed)}) == 7
    assert a.config()["recipe"]["train"]["episodes"] == 1000


def test_a_recipe_with_its_own_validation_shape_trains_one_model_per_shot_for_all_ways():
    cells = plan_cells(
        RunConfig(methods=("protonet", "relnet"), ways=(5, 20), shots=(1, 5), preset="paper-cpu"),
        "cpu",
    )
    groups = group_by_training(cells)
    assert sorted(len(g) for g in groups.values()) == [2, 2, 2, 2]  # one model per method and shot
    assert all(
        {(c.method, c.k_shot) for c in g} == {(g[0].method, g[0].k_shot)} for g in groups.values()
    )
    assert all({c.n_way for c in g} == {5, 20} for g in groups.values())


def test_validation_shaped_like_the_test_setting_ties_the_model_to_that_setting():
    # the kept weights are those that validate best at the test setting, so two test ways are
    # two trainings even though the training episodes are identical
    cells = plan_cells(
        RunConfig(methods=("protonet",), ways=(5, 20), shots=(1,), preset="quick"), "cpu"
    )
    assert len(group_by_training(cells)) == 2


def test_record_identities_survive_new_optional_training_fields():
    # the committed quick-preset record of matchnet 5-way 1-shot, seed 0, CPU, has this hash
    cell = plan_cells(RunConfig(methods=("matchnet",), shots=(1,)), "cpu")[0]
    assert "val_n_way" not in cell.config()["recipe"]["train"]
    assert cell.config_hash == "f0a3a8fa089ba574"
    fixed = plan_cells(RunConfig(methods=("matchnet",), shots=(1,), preset="paper-cpu"), "cpu")[0]
    assert fixed.config()["recipe"]["train"]["val_n_way"] == 20


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            RunConfig(methods=("relnt",)),
            "unknown method 'relnt'; registered methods: baseline, baselinepp, matchnet, protonet, relnet, simpleshot",
        ),
        (
            RunConfig(preset="fast"),
            "unknown preset 'fast'; valid: quick, paper, pretrained-cpu, paper-cpu",
        ),
        (
            RunConfig(dataset="cifar"),
            "unknown dataset 'cifar'; available: cifar-fs, cub, fc100, folder, mini-imagenet, omniglot",
        ),
        (
            RunConfig(split="ravi"),
            "unknown split 'ravi' for dataset 'omniglot'; valid: vinyals, lake, lake-rotated",
        ),
        (
            RunConfig(options=("relnet.relaton=mlp",)),
            "unknown option 'relaton' for method 'relnet'; valid options: relation",
        ),
        (RunConfig(options=("relation=mlp",)), "must look like METHOD.KEY=VALUE"),
        (
            RunConfig(methods=("protonet",), options=("relnet.relation=mlp",)),
            "not among --methods protonet",
        ),
        (RunConfig(shots=(0,)), "--shots must be a number >= 1, got 0"),
        (RunConfig(val_episodes=0), "--val-episodes must be a number >= 1, got 0"),
        (RunConfig(train=("n_query",)), "must look like KEY=VALUE"),
        (RunConfig(train=("n_qury=5",)), "'n_qury' is not a training field; valid: episodes,"),
        (RunConfig(train=("n_query=2.5",)), "n_query must be a whole number"),
        (RunConfig(train=("lr=fast",)), "lr must be a number"),
        (RunConfig(train=("val_n_way=5",)), "set both val_n_way and val_n_query"),
        (
            RunConfig(backbone="resnet50"),
            "--backbone 'resnet50' is not a backbone; valid: conv4, conv4-relnet, resnet12, resnet18",
        ),
    ],
)
def test_bad_input_is_rejected_with_the_valid_choices(config, message):
    with pytest.raises((UsageError, ValueError, KeyError), match=message):
        plan_cells(config, "cpu")


def test_config_file_values_and_flags_merge_with_flags_winning(tmp_path):
    from benchmarks.run import parse_config

    path = tmp_path / "run.toml"
    path.write_text('methods = ["relnet"]\nways = 20\ntest-episodes = 100\n')
    config, listing = parse_config(["--config", str(path), "--test-episodes", "50"])
    assert (config.methods, config.ways, config.test_episodes) == (("relnet",), (20,), 50)
    assert config.shots == (1, 5) and not listing
    json_path = tmp_path / "run.json"
    json_path.write_text('{"seeds": [0, 1], "preset": "paper"}')
    config, _ = parse_config(["--config", str(json_path)])
    assert (config.seeds, config.preset) == ((0, 1), "paper")


def test_every_spelling_of_an_option_gives_one_configuration():
    spellings = [
        "matchnet.learn_temperature=true",
        "matchnet.learn_temperature=True",
        "matchnet.learn_temperature=1",
    ]
    cells = [
        plan_cells(RunConfig(methods=("matchnet",), shots=(1,), options=(o,)), "cpu")[0]
        for o in spellings
    ]
    assert {c.config_hash for c in cells} == {cells[0].config_hash}
    assert cells[0].recipe.options == {"learn_temperature": True}


def test_training_overrides_change_the_recipe_and_the_identity_and_flags_win():
    base = plan_cells(RunConfig(methods=("protonet",), shots=(5,)), "cpu")[0]
    (cell,) = plan_cells(
        RunConfig(
            methods=("protonet",),
            shots=(5,),
            train=("n_query=7", "lr=2e-3", "episodes=50", "grad_clip=none"),
            train_episodes=20,
        ),
        "cpu",
    )
    assert (cell.recipe.train.n_query, cell.recipe.train.lr) == (7, 2e-3)
    assert cell.recipe.train.episodes == 20  # --train-episodes wins over --train episodes=
    assert cell.recipe.train.grad_clip is None
    assert cell.config_hash != base.config_hash
    original = base.recipe.train
    assert dataclasses.replace(
        cell.recipe.train, n_query=original.n_query, lr=original.lr, episodes=original.episodes
    ) == (original)


def test_the_published_recipes_learn_the_matching_network_scale():
    for name in ("paper", "paper-cpu"):
        cell = plan_cells(RunConfig(methods=("matchnet",), shots=(1,), preset=name), "cpu")[0]
        assert cell.recipe.options == {"learn_temperature": True}
        same = plan_cells(
            RunConfig(
                methods=("matchnet",),
                shots=(1,),
                preset=name,
                options=("matchnet.learn_temperature=true",),
            ),
            "cpu",
        )[0]
        assert same.config_hash == cell.config_hash
    quick = plan_cells(RunConfig(methods=("matchnet",), shots=(1,)), "cpu")[0]
    assert quick.recipe.options == {}


def test_a_record_made_under_other_method_defaults_is_stale_not_done():
    from benchmarks.experiment.cells import check_records
    from tests.benchmarks.records.samples import sample_record

    cell = plan_cells(RunConfig(methods=("matchnet",), shots=(1,)), "cpu")[0]

    def record(**options):
        return sample_record(config_hash=cell.config_hash, method_options=options)

    current = record(
        temperature=10.0, learn_temperature=False, similarity="cosine", fce=False, fce_steps=5
    )
    assert check_records([cell], [current]).done == {cell.config_hash}
    older = record(temperature=10.0, fce=False)
    assert check_records([cell], [older]).done == {cell.config_hash}  # options added since: fine
    changed = record(temperature=5.0)
    check = check_records([cell], [current, changed])  # the latest record counts
    assert check.done == set()
    assert (
        "recorded with matchnet options temperature=5.0; they now resolve to temperature=10.0"
        in (check.stale[cell.config_hash])
    )
    gone = record(metric="l2")
    assert "metric=(no such option)" in check_records([cell], [gone]).stale[cell.config_hash]


def test_the_data_read_is_part_of_a_cells_identity_unless_it_is_the_official_release():
    from benchmarks.experiment.cells import with_data

    cell = plan_cells(RunConfig(methods=("matchnet",), shots=(1,)), "cpu")[0]
    (same,) = with_data([cell], None)  # official data: the committed record's hash is kept
    assert same.config_hash == cell.config_hash == "f0a3a8fa089ba574"
    (other,) = with_data([cell], "0123456789abcdef")
    assert other.config()["data"] == "0123456789abcdef"
    assert other.config_hash != cell.config_hash
    assert other.training_hash != cell.training_hash  # checkpoints are not shared either


def test_official_omniglot_has_no_data_key_and_other_data_does(data_root, omniglot, tmp_path):
    from benchmarks.experiment.cells import data_key
    from datasets.folder import folder_split, load_folder
    from datasets.registry import LoadedDataset
    from tests.datasets.fakes import write_class_folder

    official = LoadedDataset("omniglot", lambda scheme, split: None, omniglot.fingerprint, True)
    assert data_key(official, "vinyals") is None

    def folder_key(root, scheme="random"):
        data = load_folder(root, cache_dir=tmp_path / "cache", progress=False)
        loaded = LoadedDataset(
            "folder", lambda s, split: folder_split(data, s, split), data.fingerprint, None
        )
        return data_key(loaded, scheme)

    write_class_folder(tmp_path / "a")
    write_class_folder(tmp_path / "b", classes=25)
    key_a = folder_key(tmp_path / "a")
    assert key_a == folder_key(tmp_path / "a")
    assert key_a != folder_key(tmp_path / "b")
    (tmp_path / "a" / "fewshot.toml").write_text("seed = 3\n")  # same pixels, other class split
    assert folder_key(tmp_path / "a") != key_a


def test_repeated_ways_shots_and_seeds_are_merged():
    cells = plan_cells(
        RunConfig(methods=("protonet", "protonet"), ways=(5, 5), shots=(1, 1), seeds=(0, 0)), "cpu"
    )
    assert len(cells) == 1


def _committed_records(pattern: str = "*/records.jsonl") -> list[dict]:
    """The records of the committed ``results/<pattern>`` files (every dataset's by default)."""
    import json

    from tests.conftest import REPO

    lines = [
        line
        for records in sorted((REPO / "results").glob(pattern))
        for line in records.read_text().splitlines()
    ]
    return [json.loads(line) for line in lines if line.strip()]


def test_every_committed_record_keeps_its_identity():
    """Planning each committed record's cell again gives its configuration and config hash: the
    recipes, wherever they live, still describe the experiments that were recorded. (Training
    hashes only name checkpoints, which are not committed; some records predate their rule.)"""
    records = _committed_records()
    assert len(records) >= 50
    for record in records:
        config = record["config"]
        options = tuple(
            f"{config['method']}.{k}={v}" for k, v in config["recipe"]["options"].items()
        )
        train = config["recipe"]["train"]
        data = config.get("data")  # read from the record: the plan does not look at the data
        (cell,) = plan_cells(
            RunConfig(
                methods=(config["method"],),
                dataset=config["dataset"],
                split=config["split"],
                episodes=config.get("episodes", "random"),
                ways=(config["n_way"],),
                shots=(config["k_shot"],),
                queries=config["n_query"],
                test_episodes=config["test_episodes"],
                seeds=(config["seed"],),
                preset=config["preset"],
                options=options,
                precision=config["precision"],
                train_episodes=train["episodes"],
                time_budget=train["time_budget_s"],
            ),
            config["device"],
        )
        # a few records predate a preset option (matchnet's learned scale): their options are
        # their own, the rest of the recipe must be the preset's
        recipe = dataclasses.replace(cell.recipe, options=config["recipe"]["options"])
        cell = dataclasses.replace(cell, recipe=recipe, data=data)
        assert cell.config() == config, record["config_hash"]
        assert cell.config_hash == record["config_hash"]


def test_the_long_protonet_run_is_the_paper_cpu_recipe_with_a_longer_schedule():
    """The committed long miniImageNet ProtoNet run (``results/long-run/``) is what its README
    paragraph says: the ``paper-cpu`` 5-way 5-shot recipe with 7,000 episodes, the rate halved
    every 2,500 and a 6,000 s budget; nothing else about the recipe differs but the ProtoNet
    temperature on natural images, which came after it (the record keeps temperature 1)."""
    (record,) = _committed_records("long-run/mini-imagenet/records.jsonl")
    run = RunConfig(methods=("protonet",), dataset="mini-imagenet", shots=(5,), preset="paper-cpu")
    (short,) = plan_cells(run, "cpu")
    (long,) = plan_cells(
        dataclasses.replace(run, train_episodes=7000, train=("lr_step=2500",), time_budget=6000.0),
        "cpu",
    )
    assert short.recipe.options == {"temperature": 64.0}
    recipe = dataclasses.replace(long.recipe, options=record["config"]["recipe"]["options"])
    long = dataclasses.replace(long, recipe=recipe, data=record["config"].get("data"))
    assert recipe.options == {}
    assert long.config_hash == record["config_hash"]
    assert long.recipe.train == dataclasses.replace(
        short.recipe.train, episodes=7000, lr_step=2500, time_budget_s=6000.0
    )


def test_backbone_replaces_every_recipes_own_and_is_part_of_the_identity():
    own = plan_cells(RunConfig(methods=("relnet", "protonet"), shots=(1,)), "cpu")
    deep = plan_cells(
        RunConfig(methods=("relnet", "protonet"), shots=(1,), backbone="resnet12"), "cpu"
    )
    assert [c.recipe.backbone for c in own] == ["conv4-relnet", "conv4"]
    assert [c.recipe.backbone for c in deep] == ["resnet12", "resnet12"]
    assert {c.config_hash for c in own}.isdisjoint(c.config_hash for c in deep)
    assert [dataclasses.replace(c, recipe=o.recipe) for c, o in zip(deep, own)] == own


def test_the_test_episode_protocol_is_part_of_a_cells_identity_but_not_of_its_training():
    random = plan_cells(
        RunConfig(methods=("protonet",), split="lake", ways=(20,), shots=(1,)), "cpu"
    )
    within = plan_cells(
        RunConfig(
            methods=("protonet",), split="lake", ways=(20,), shots=(1,), episodes="within-alphabet"
        ),
        "cpu",
    )
    assert "episodes" not in random[0].config()  # every record made before keeps its hash
    assert within[0].config()["episodes"] == "within-alphabet"
    assert within[0].config_hash != random[0].config_hash
    assert within[0].training_hash == random[0].training_hash  # one trained model serves both
    with pytest.raises(UsageError, match="--episodes 'lake' is not a test-episode protocol"):
        plan_cells(RunConfig(episodes="lake"), "cpu")


def test_a_natural_image_recipe_made_for_conv4_maps_is_not_moved_to_another_backbone():
    def relnet_options(backbone, *options):
        config = RunConfig(
            methods=("relnet",),
            dataset="mini-imagenet",
            shots=(1,),
            preset="paper-cpu",
            backbone=backbone,
            options=options,
        )
        return plan_cells(config, "cpu")[0].recipe.options

    assert relnet_options(None) == {"relation_layout": "unpadded"}
    assert relnet_options("conv4-relnet") == {"relation_layout": "unpadded"}
    with pytest.raises(ValueError, match="no recipe for paper-cpu/natural-images/resnet18"):
        relnet_options("resnet18")


def test_another_backbone_drops_the_relation_layout_made_for_conv4_maps():
    from methods import method_class

    adapt = method_class("relnet").options_for_backbone
    assert adapt({"relation_layout": "unpadded"}, "conv4-relnet") == {"relation_layout": "unpadded"}
    assert adapt({"relation_layout": "unpadded"}, "resnet18") == {}
