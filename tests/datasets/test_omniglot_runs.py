"""Lake et al.'s 20 official one-shot runs: read as published, or a clear error."""

from __future__ import annotations

import pytest
import torch

from datasets.omniglot_runs import load_official_runs
from datasets.paths import DatasetFormatError, DatasetNotFoundError
from tests.datasets import fakes


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, fakes.write_official_runs(root)


def test_the_twenty_runs_are_twenty_way_one_shot_episodes_with_their_labels(runs_root):
    root, labels = runs_root
    runs = load_official_runs(root)
    assert [run.name for run in runs.runs] == [f"run{i:02d}" for i in range(1, 21)]
    first = runs.runs[0]
    assert first.support.shape == (20, 1, 28, 28) and first.query.shape == (20, 1, 28, 28)
    assert first.support.dtype == torch.uint8
    assert first.query_labels.tolist() == labels["run01"]
    assert load_official_runs(root / "all_runs").fingerprint == runs.fingerprint


def _broken(tmp_path):
    fakes.write_official_runs(tmp_path)
    return tmp_path / "all_runs"


def test_a_run_with_another_number_of_images_is_named(tmp_path):
    base = _broken(tmp_path)
    (base / "run03" / "test" / "item20.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"run03/test holds 19 PNG files; expected item01"):
        load_official_runs(tmp_path)


def test_a_label_naming_a_missing_file_is_named(tmp_path):
    base = _broken(tmp_path)
    labels = base / "run05" / "class_labels.txt"
    labels.write_text(labels.read_text().replace("class", "klass", 1))
    with pytest.raises(DatasetFormatError, match=r"class_labels.txt, line 1: expected"):
        load_official_runs(tmp_path)
    lines = labels.read_text().replace("klass", "class").splitlines()
    lines[0] = lines[0].replace("item01", "item21")
    labels.write_text("\n".join(lines))
    with pytest.raises(
        DatasetNotFoundError, match=r"line 1 names .*run05/test/item21.png, which is missing"
    ):
        load_official_runs(tmp_path)


def test_a_missing_labels_file_or_run_is_named(tmp_path):
    base = _broken(tmp_path)
    (base / "run20" / "class_labels.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"run20/class_labels.txt is missing"):
        load_official_runs(tmp_path)
    (base / "run20").rename(base / "run99")
    with pytest.raises(DatasetNotFoundError, match=r"run20 is missing"):
        load_official_runs(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        load_official_runs(tmp_path / "nowhere")
