"""The class-folder dataset: discovery, both split schemes, settings, errors, and a full run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.run import main
from datasets import folder as folder_module
from datasets.folder import (
    FolderDataset,
    folder_split,
    load_folder,
    random_class_split,
)
from datasets.paths import DamagedCacheWarning, DatasetFormatError, DatasetNotFoundError
from tests.datasets.fakes import TINY_RUN, read_only, write_class_folder


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    written = write_class_folder(root)
    (root / "fewshot.toml").write_text("image_size = 20\n")  # the written size: exact pixels
    return root, written


def _load(root, tmp_path) -> FolderDataset:
    return load_folder(root, cache_dir=tmp_path / "cache", progress=False)


def test_classes_images_and_pixels_round_trip(folder, tmp_path):
    root, written = folder
    data = _load(root, tmp_path)
    part = data.data.parts["all"]
    assert part.class_names == tuple(sorted(written))  # empty_folder and notes.txt ignored
    assert tuple(part.images.shape) == (24 * 6, 3, 20, 20)
    stored = part.images[:6].numpy().transpose(0, 2, 3, 1)
    assert np.array_equal(stored, written["species_00"])


def test_random_split_is_seeded_disjoint_and_sized_by_the_fractions(folder, tmp_path):
    root, written = folder
    data = _load(root, tmp_path)
    splits = {s: folder_split(data, "random", s) for s in ("train", "val", "test")}
    sizes = [splits[s].num_classes for s in ("train", "val", "test")]
    assert sizes == [15, 4, 5]  # 64/16/20 % of 24 classes
    names = [set(splits[s].class_names) for s in ("train", "val", "test")]
    assert set.union(*names) == set(written) and sum(len(n) for n in names) == 24
    again = random_class_split(sorted(written), (0.64, 0.16, 0.2), seed=0)
    assert again["test"] == sorted(names[2])
    other = random_class_split(sorted(written), (0.64, 0.16, 0.2), seed=1)
    assert other["test"] != again["test"]
    train = np.concatenate([written[n] for n in names[0]]).reshape(-1, 3) / 255.0
    assert np.allclose(splits["test"].mean, train.mean(0))  # training classes' statistics


def test_split_files_scheme(folder, tmp_path):
    root, written = folder
    names = sorted(written)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(names[:20]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(names[20:22]))
    (root / "splits" / "test.txt").write_text(f"{names[22]}\n\n{names[23]}\n")
    data = _load(root, tmp_path)
    assert folder_split(data, "files", "test").class_names == tuple(names[22:])
    assert folder_split(data, "files", "train").num_classes == 20
    (root / "splits" / "val.txt").write_text(f"{names[0]}\nno_such_class\n")
    with pytest.raises(DatasetFormatError, match="no_such_class"):
        folder_split(data, "files", "val")
    (root / "splits" / "val.txt").write_text(names[0])
    with pytest.raises(DatasetFormatError, match="both train.txt and val.txt"):
        folder_split(data, "files", "val")
    (root / "splits" / "val.txt").unlink()
    with pytest.raises(DatasetFormatError, match="lacks val.txt"):
        folder_split(data, "files", "val")


def test_files_scheme_without_split_files_says_what_to_write(folder, tmp_path):
    root, _ = folder
    with pytest.raises(DatasetNotFoundError, match=r"splits/train\.txt.*--split random"):
        folder_split(_load(root, tmp_path), "files", "train")


def test_settings_file_sets_size_channels_and_is_checked(folder, tmp_path):
    root, _ = folder
    (root / "fewshot.toml").write_text("image_size = 12\nchannels = 1\nseed = 3\n")
    data = _load(root, tmp_path)
    assert folder_split(data, "random", "val").image_shape == (1, 12, 12)
    (root / "fewshot.toml").write_text("image_sise = 12\n")
    with pytest.raises(DatasetFormatError, match="unknown key.*image_sise"):
        _load(root, tmp_path)
    (root / "fewshot.toml").write_text("fractions = [0.5, 0.5, 0.5]\n")
    with pytest.raises(DatasetFormatError, match="summing to 1"):
        _load(root, tmp_path)
    (root / "fewshot.toml").write_text('image_size = "big"\n')
    with pytest.raises(DatasetFormatError, match="image_size must be a whole number.*'big'"):
        _load(root, tmp_path)
    (root / "fewshot.toml").write_text('fractions = ["a", 0.5, 0.5]\n')
    with pytest.raises(DatasetFormatError, match="fractions must be a list of three numbers"):
        _load(root, tmp_path)


def test_folder_without_classes_or_with_a_broken_image(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"<class_name>/\*\.jpg"):
        load_folder(tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetNotFoundError, match="is not a directory"):
        load_folder(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    root = tmp_path / "broken"
    write_class_folder(root, classes=3, per_class=2)
    (root / "species_01" / "img001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match=r"species_01/img001\.png"):
        load_folder(root, cache_dir=tmp_path / "cache", progress=False)


def test_runner_runs_end_to_end_on_a_folder(tmp_path):
    root = tmp_path / "images"
    write_class_folder(root, classes=32)  # 20 training classes: the quick preset trains 20-way
    code = main(
        [
            "--dataset",
            "folder",
            "--data-root",
            str(root),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
            *TINY_RUN,
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "out" / "folder" / "records.jsonl").read_text())
    assert record["dataset"] == "folder" and record["split"] == "random"


# --- unusual or damaged input ---------------------------------------------------------------------


def _add_macos_metadata(root) -> None:
    """What unpacking a macOS zip leaves: ``__MACOSX/``, ``._`` AppleDouble files, hidden files."""
    (root / "__MACOSX" / "species_00").mkdir(parents=True)
    (root / "__MACOSX" / "species_00" / "._img000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "species_00" / "._img000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "species_01" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".hidden_class").mkdir()
    (root / ".hidden_class" / "img000.png").write_bytes(
        (root / "species_00" / "img000.png").read_bytes()
    )


def test_macos_metadata_is_skipped_and_the_cache_stays_the_same(folder, tmp_path, monkeypatch):
    root, written = folder
    first = _load(root, tmp_path)
    _add_macos_metadata(root)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again: the metadata changed the cache key")

    monkeypatch.setattr(folder_module, "convert", no_conversion)
    again = _load(root, tmp_path)
    assert again.data.directory == first.data.directory
    assert again.data.parts["all"].class_names == tuple(sorted(written))


def test_macos_metadata_is_skipped_on_the_first_conversion(tmp_path):
    root = tmp_path / "images"
    written = write_class_folder(root, classes=3, per_class=2)
    _add_macos_metadata(root)
    data = load_folder(root, cache_dir=tmp_path / "cache", progress=False)
    assert data.data.parts["all"].class_names == tuple(sorted(written))
    assert data.data.parts["all"].class_size.tolist() == [2, 2, 2]


def test_decompression_bomb_is_a_format_error_naming_the_file(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_class_folder(root, classes=3, per_class=2)
    # 20 x 20 images against a limit of 100 pixels: past twice the limit, as a 14000 x 14000
    # image is against the default one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetFormatError) as caught:
        load_folder(root, cache_dir=tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert f"cannot decode image {root / 'species_00' / 'img000.png'}" in message
    assert "DecompressionBombError" in message


def test_damaged_cache_is_moved_aside_and_converted_again(folder, tmp_path):
    root, written = folder
    first = _load(root, tmp_path)
    npy = first.data.directory / "all.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    with pytest.warns(DamagedCacheWarning, match="moved aside"):
        again = _load(root, tmp_path)
    assert again.data.directory == first.data.directory
    assert again.fingerprint == first.fingerprint
    assert Path(f"{first.data.directory}.damaged").is_dir()


def test_unwritable_cache_dir_is_reported_before_converting(folder, tmp_path, monkeypatch):
    root, _ = folder

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache could not be written")

    monkeypatch.setattr(folder_module, "_open_image", no_decoding)
    with read_only(tmp_path / "cache", monkeypatch), pytest.raises(PermissionError) as caught:
        _load(root, tmp_path)
    assert f"cache folder {tmp_path / 'cache'} is not writable" in str(caught.value)
    assert "choose another folder with --cache-dir or $FEWSHOT_CACHE_DIR" in str(caught.value)


def test_converted_folder_loads_from_a_read_only_cache_dir(folder, tmp_path, monkeypatch):
    root, written = folder
    first = _load(root, tmp_path)
    with read_only(tmp_path / "cache", monkeypatch):
        assert _load(root, tmp_path).fingerprint == first.fingerprint


def test_data_root_that_is_a_file_says_what_the_folder_must_hold(folder, tmp_path):
    root, _ = folder
    image = root / "species_00" / "img000.png"
    with pytest.raises(DatasetNotFoundError) as caught:
        _load(image, tmp_path)
    message = str(caught.value)
    assert f"data root {image} is a file, not a folder" in message
    assert "one sub-folder of images per class" in message
