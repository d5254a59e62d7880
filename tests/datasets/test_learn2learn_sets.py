"""Datasets read through learn2learn, from tiny files in each dataset's exact on-disk format."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.run import main
from datasets import EpisodeSampler
from datasets import learn2learn_sets as module
from datasets.learn2learn_sets import (
    SETS,
    MissingDependencyError,
    load_learn2learn_set,
    standard_split,
)
from datasets.paths import DatasetFormatError, DatasetNotFoundError
from tests.conftest import REPO
from tests.datasets import fakes
from tests.datasets.fakes import TINY_RUN
from tests.learn2learn_required import learn2learn_or_skip

EXACT_PIXELS = ("mini-imagenet", "tiered-imagenet", "cifar-fs", "fc100")  # CUB is JPEG, resized


def write_fake(name: str, root: Path):
    if name == "cub":
        splits = sys.modules["learn2learn.vision.datasets.cu_birds200"].SPLITS
        return fakes.write_cub(root, splits)
    writers = {
        "mini-imagenet": fakes.write_mini_imagenet,
        "tiered-imagenet": fakes.write_tiered_imagenet,
        "cifar-fs": fakes.write_cifar_fs,
        "fc100": fakes.write_fc100,
    }
    return writers[name](root)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """A data root with every learn2learn dataset in its published layout, and what was written."""
    learn2learn_or_skip()
    root = tmp_path_factory.mktemp("l2l-data")
    return root, {name: write_fake(name, root) for name in SETS}


@pytest.mark.parametrize("name", sorted(SETS))
def test_splits_hold_the_written_classes_and_pixels(fake_root, tmp_path, name):
    root, written = fake_root
    data = load_learn2learn_set(name, root, cache_dir=tmp_path, download=False, progress=False)
    side = SETS[name].image_size
    for split in ("train", "val", "test"):
        part = data.parts[split]
        assert set(part.class_names) == set(written[name][split])
        assert tuple(part.images.shape[1:]) == (3, side, side)
        for c, class_name in enumerate(part.class_names):
            start, size = int(part.class_start[c]), int(part.class_size[c])
            stored = part.images[start : start + size].numpy().transpose(0, 2, 3, 1)
            if name in EXACT_PIXELS:
                assert np.array_equal(stored, written[name][split][class_name])
            else:
                assert size == written[name][split][class_name]
    splits = {s: standard_split(data, "standard", s) for s in ("train", "val", "test")}
    assert not set(splits["train"].class_names) & set(splits["test"].class_names)
    assert splits["test"].name == f"{name}/standard/test"
    assert splits["test"].mean == splits["train"].mean  # training statistics everywhere
    if name in EXACT_PIXELS:
        train = np.concatenate(list(written[name]["train"].values())).reshape(-1, 3) / 255.0
        assert np.allclose(splits["train"].mean, train.mean(0))
        assert np.allclose(splits["train"].std, train.std(0))
    episode = EpisodeSampler(splits["val"], 2, 1, 1)[0]
    assert episode.query_x.shape == (2, 3, side, side)
    assert abs(float(episode.support_x.mean())) < 1.5  # normalised, not in [0, 255]


def test_second_load_reads_the_cache_without_learn2learn(fake_root, tmp_path, monkeypatch):
    root, _ = fake_root
    first = load_learn2learn_set("fc100", root, cache_dir=tmp_path, download=False, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(module, "convert", fail)
    monkeypatch.setitem(sys.modules, "learn2learn", None)
    second = load_learn2learn_set("fc100", root, cache_dir=tmp_path, download=False, progress=False)
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.parts["train"].images.numpy(), first.parts["train"].images.numpy())


def test_changed_file_is_converted_again(fake_root, tmp_path):
    root = tmp_path / "root"
    fakes.write_fc100(root)
    first = load_learn2learn_set("fc100", root, cache_dir=tmp_path, download=False, progress=False)
    path = root / "fc100" / "FC100_test.pickle"
    with open(path, "rb") as stream:
        archive = pickle.load(stream, encoding="latin1")
    archive["data"][0, 0, 0, 0] ^= 1
    with open(path, "wb") as stream:
        pickle.dump(archive, stream, protocol=2)
    second = load_learn2learn_set("fc100", root, cache_dir=tmp_path, download=False, progress=False)
    assert second.fingerprint != first.fingerprint
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("fc100-32px-")]) == 2


def test_cifar_fs_raw_folders_are_never_written_to(fake_root, tmp_path):
    root, _ = fake_root
    load_learn2learn_set("cifar-fs", root, cache_dir=tmp_path, download=False, progress=False)
    assert sorted(p.name for p in (root / "cifarfs").iterdir()) == ["cifar100"]
    assert [p.name for p in tmp_path.iterdir() if "scratch" in p.name] == []


@pytest.mark.parametrize("name", ["tiered-imagenet", "cifar-fs", "fc100", "cub"])
def test_runner_runs_end_to_end(fake_root, tmp_path, name):
    root, _ = fake_root
    code = main(
        [
            "--dataset",
            name,
            "--data-root",
            str(root),
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "out"),
            *TINY_RUN,
        ]
    )
    assert code == 0
    lines = (tmp_path / "out" / name / "records.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 1 and record["dataset"] == name and record["split"] == "standard"
    assert record["test_episodes"] == 2 and record["dataset_matches_official"] is None


def test_command_line_runs_mini_imagenet_end_to_end(fake_root, tmp_path):
    root, _ = fake_root
    env = {**os.environ, "FEWSHOT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--dataset",
            "mini-imagenet",
            "--data-root",
            str(root),
            "--out",
            str(tmp_path / "out"),
            *TINY_RUN,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mini-imagenet / standard split" in result.stdout
    assert "protonet" in result.stdout
    assert "Gym has been unmaintained" not in result.stderr


@pytest.mark.parametrize("name", sorted(SETS))
def test_missing_files_name_the_layout_and_where_it_looked(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_learn2learn_set(name, tmp_path, cache_dir=tmp_path / "c", download=False)
    message = str(caught.value)
    for relative in SETS[name].layouts[0]:
        assert relative in message
    assert str(tmp_path) in message and "download=False" in message
    assert "--data-root" in message and "FEWSHOT_DATA_ROOT" in message


def test_without_learn2learn_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    fakes.write_mini_imagenet(tmp_path / "root")
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # import learn2learn -> ImportError
    with pytest.raises(MissingDependencyError, match=r"bash scripts/setup\.sh"):
        load_learn2learn_set("mini-imagenet", tmp_path / "root", cache_dir=tmp_path / "c")
    code = main(
        [
            "--dataset",
            "mini-imagenet",
            "--data-root",
            str(tmp_path / "root"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "out"),
            *TINY_RUN,
        ]
    )
    assert code == 2
    assert "learn2learn" in capsys.readouterr().err
    assert not (tmp_path / "out" / "mini-imagenet" / "records.jsonl").exists()


def test_failed_download_removes_what_it_left(tmp_path, monkeypatch):
    learn2learn_or_skip()
    mini = sys.modules["learn2learn.vision.datasets.mini_imagenet"]

    def broken_download(source, destination, *args, **kwargs):
        Path(destination).write_bytes(b"\x80\x04partial")  # a truncated pickle
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(mini, "download_file", broken_download)
    monkeypatch.setattr(mini, "download_file_from_google_drive", broken_download)
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError, match="download failed"):
        load_learn2learn_set("mini-imagenet", root, cache_dir=tmp_path / "c", progress=False)
    assert not (root / "mini-imagenet").exists()


def test_unreadable_file_is_a_format_error_naming_it(fake_root, tmp_path):
    root = tmp_path / "root"
    fakes.write_fc100(root)
    (root / "fc100" / "FC100_val.pickle").write_bytes(b"not a pickle")
    with pytest.raises(DatasetFormatError, match="not in the format learn2learn reads") as caught:
        load_learn2learn_set(
            "fc100", root, cache_dir=tmp_path / "c", download=False, progress=False
        )
    assert "validation" in str(caught.value) and str(root / "fc100") in str(caught.value)
    assert [p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")] == []


class _Payload:
    """What a hostile pickle constructs: anything but data."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(fake_root, tmp_path):
    import pickle

    root = tmp_path / "root"
    fakes.write_fc100(root)
    (root / "fc100" / "FC100_val.pickle").write_bytes(pickle.dumps({"data": _Payload()}))
    with pytest.raises(DatasetFormatError, match="asks for posix.system"):
        load_learn2learn_set(
            "fc100", root, cache_dir=tmp_path / "c", download=False, progress=False
        )


def test_the_restricted_unpickler_reads_what_dataset_pickles_hold():
    import pickle

    import numpy as np

    from datasets.safe_pickle import safe_loads

    data = {"labels": [1, 2], "images": np.zeros((2, 3), np.uint8), "names": (b"n01", "n02")}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        loaded = safe_loads(pickle.dumps(data, protocol=protocol))
        assert loaded["labels"] == [1, 2] and loaded["names"] == (b"n01", "n02")
        assert np.array_equal(loaded["images"], data["images"])
