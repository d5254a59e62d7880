"""``--dry-run``: the plan with each cell's status and a cost estimate that names its basis."""

from __future__ import annotations

import os

from benchmarks.experiment.config import RunConfig, plan_cells
from benchmarks.experiment.dryrun import CostModel
from benchmarks.run import main
from tests.benchmarks.records.samples import sample_record


def test_dry_run_lists_done_and_pending_cells_and_trains_nothing(
    data_root, omniglot, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    monkeypatch.setenv(
        "FEWSHOT_CACHE_DIR", os.environ.get("FEWSHOT_CACHE_DIR") or str(tmp_path / "cache")
    )
    base = [
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        "--device",
        "cpu",
        "--methods",
        "protonet",
        "--train-episodes",
        "2",
        "--test-episodes",
        "3",
    ]
    records = tmp_path / "out" / "omniglot" / "records.jsonl"

    assert main([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells: 0 already recorded, 2 to run in 2 training runs" in out
    assert "executor local" in out and "(rough)" in out and "(measured)" not in out
    assert not records.exists()

    assert main([*base, "--shots", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells: 1 already recorded, 1 to run in 1 training runs" in out
    assert "  done     protonet omniglot/vinyals 5-way 1-shot seed 0" in out
    assert "    pending  protonet omniglot/vinyals 5-way 5-shot seed 0" in out
    assert len(records.read_text().splitlines()) == 1


def test_costs_come_from_matching_records_else_from_a_rough_rule():
    one, five = plan_cells(RunConfig(methods=("protonet",), shots=(1, 5), test_episodes=100), "cpu")
    record = sample_record(
        config=one.config(),
        train_episodes=10,
        train_wall_s=2.0,
        train_reused_checkpoint=False,
        eval_wall_ms_per_episode=9.0,
        data_ms_per_episode=1.0,
    )
    reused = sample_record(
        config=one.config(),
        train_episodes=10,
        train_wall_s=0.0,
        train_reused_checkpoint=True,
        eval_wall_ms_per_episode=9.0,
        data_ms_per_episode=1.0,
    )
    costs = CostModel([record, reused], (1, 28, 28))  # a reused checkpoint says nothing of training
    assert costs.training(one).basis == "measured"
    assert abs(costs.training(one).seconds - 1000 * 0.2) < 1e-9
    assert costs.testing(one).basis == "measured" and abs(costs.testing(one).seconds - 1.0) < 1e-9
    assert costs.training(five).basis == "rough" and costs.testing(five).basis == "rough"
    bigger = CostModel([], (3, 84, 84))
    assert bigger.training(five).seconds > 20 * costs.training(five).seconds


def test_rough_costs_scale_with_the_backbones_flops():
    """Without records, a ResNet-12 cell costs its FLOPs ratio to Conv-4 times as much."""
    from benchmarks.experiment.dryrun import backbone_cost_factor

    image = (3, 84, 84)
    factor = backbone_cost_factor("resnet12", image)
    assert 20 < factor < 60  # 3.5 GFLOP against about 0.1 per 84x84 image
    assert backbone_cost_factor("conv4-relnet", image) == 1.0
    model = CostModel([], image)
    conv, deep = (
        plan_cells(RunConfig(methods=("protonet",), shots=(5,), backbone=name), "cpu")[0]
        for name in ("conv4", "resnet12")
    )
    assert abs(model.training(deep).seconds / model.training(conv).seconds - factor) < 1e-6
    assert model.testing(deep).basis == "rough"
