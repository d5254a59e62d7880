"""miniImageNet in Ravi & Larochelle's form: an image folder and three split CSV files."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.mini_imagenet import (
    OFFICIAL_SOURCE_DIGEST,
    SPLIT_FILES,
    SourceDigest,
    load_csv_form,
    locate_csv,
    read_split_file,
    read_split_files,
)
from datasets.paths import DatasetFormatError, DatasetNotFoundError
from datasets.registry import dataset_spec
from tests.datasets import fakes

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mini-imagenet"


def load(root: Path, cache: Path):
    return dataset_spec("mini-imagenet").load(root, cache, False)


@pytest.fixture
def no_learn2learn(monkeypatch):
    """learn2learn cannot be imported: the CSV form must not need it."""
    for name in [m for m in sys.modules if m == "learn2learn" or m.startswith("learn2learn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "learn2learn", None)


@pytest.mark.parametrize(
    ("base", "image_folder"),
    [("mini-imagenet", True), ("mini-imagenet", False), ("", True)],
    ids=["images-folder", "images-beside-csv", "csv-in-data-root"],
)
def test_the_csv_form_is_read_without_learn2learn(tmp_path, no_learn2learn, base, image_folder):
    written = fakes.write_mini_imagenet_csv(tmp_path / "root", base, image_folder)
    data = load(tmp_path / "root", tmp_path / "cache")
    for split, classes in written.items():
        loaded = data.split("standard", split)
        assert loaded.class_names == tuple(classes)
        assert loaded.class_size.tolist() == [len(files) for files in classes.values()]
        assert loaded.images.shape[1:] == (3, 84, 84)
        folder = tmp_path / "root" / base / ("images" if image_folder else "")
        first_class, files = next(iter(classes.items()))
        start = int(loaded.class_start[0])
        for offset, name in enumerate(files):  # stored in file-name order, pixels as decoded
            decoded = np.asarray(Image.open(folder / name).convert("RGB")).transpose(2, 0, 1)
            assert np.array_equal(loaded.images[start + offset].numpy(), decoded)
    train = data.split("standard", "train")
    assert data.split("standard", "test").mean == train.mean  # training statistics throughout
    assert data.matches_official is False  # not the published files


def test_images_of_another_size_are_scaled_and_centre_cropped(tmp_path):
    fakes.write_mini_imagenet_csv(tmp_path / "root", side=100)
    data = load(tmp_path / "root", tmp_path / "cache")
    assert data.split("standard", "val").images.shape[1:] == (3, 84, 84)


def test_a_second_load_reads_the_cache_and_new_split_files_make_a_new_one(tmp_path, monkeypatch):
    fakes.write_mini_imagenet_csv(tmp_path / "root")
    first = load(tmp_path / "root", tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded again")

    with monkeypatch.context() as patched:
        patched.setattr(Image, "open", refuse)
        assert load(tmp_path / "root", tmp_path / "cache").fingerprint == first.fingerprint
    csv = tmp_path / "root" / "mini-imagenet" / "test.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], *lines[4:], *lines[1:4]]) + "\n")  # classes reordered
    other = load(tmp_path / "root", tmp_path / "cache")
    assert other.fingerprint != first.fingerprint
    assert (
        other.split("standard", "test").class_names[0]
        != (first.split("standard", "test").class_names[0])
    )


def test_the_source_digest_names_split_files_and_image_contents(tmp_path):
    written = fakes.write_mini_imagenet_csv(tmp_path / "root")
    folder = tmp_path / "root" / "mini-imagenet"
    data = load_csv_form(locate_csv(tmp_path / "root"), tmp_path / "cache", progress=False)
    lines = [
        f"{split}:{hashlib.sha256((folder / name).read_bytes()).hexdigest()}"
        for split, name in SPLIT_FILES
    ]
    images = sorted(name for classes in written.values() for f in classes.values() for name in f)
    lines += [
        f"{name}:{hashlib.sha256((folder / 'images' / name).read_bytes()).hexdigest()}"
        for name in images
    ]
    assert data.extra["source_digest"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.skipif(not (SHARED / "IMAGES.SHA256").is_file(), reason="published checksums absent")
def test_the_official_digest_is_that_of_the_published_split_files_and_images():
    """Recomputed from the published per-image SHA-256 list and split files, so the digest the
    code compares against is the one of the release, not of whatever was converted here."""
    digest = SourceDigest({split: read_split_file(SHARED / name) for split, name in SPLIT_FILES})
    for line in (SHARED / "IMAGES.SHA256").read_text().splitlines():
        checksum, path = line.split()
        digest.add_checksum(path.removeprefix("images/"), checksum)
    assert len(digest) == 60000
    assert digest.hexdigest() == OFFICIAL_SOURCE_DIGEST


# --- errors -------------------------------------------------------------------------------------


def test_a_missing_split_file_is_named(tmp_path):
    fakes.write_mini_imagenet_csv(tmp_path / "root")
    (tmp_path / "root" / "mini-imagenet" / "val.csv").unlink()
    with pytest.raises(
        DatasetNotFoundError, match=r"train\.csv, test\.csv found, val\.csv missing"
    ):
        load(tmp_path / "root", tmp_path / "cache")


def test_an_image_named_in_a_split_file_but_absent_is_named(tmp_path):
    written = fakes.write_mini_imagenet_csv(tmp_path / "root")
    missing = written["test"][next(iter(written["test"]))][0]
    (tmp_path / "root" / "mini-imagenet" / "images" / missing).unlink()
    with pytest.raises(DatasetNotFoundError) as raised:
        load(tmp_path / "root", tmp_path / "cache")
    message = str(raised.value)
    assert f"1 images named in {tmp_path / 'root' / 'mini-imagenet' / 'test.csv'}" in message
    assert missing in message and "lay the images out again" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_unreadable_image_is_named_with_its_split_file(tmp_path):
    written = fakes.write_mini_imagenet_csv(tmp_path / "root")
    broken = written["val"][next(iter(written["val"]))][1]
    path = tmp_path / "root" / "mini-imagenet" / "images" / broken
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetFormatError) as raised:
        load(tmp_path / "root", tmp_path / "cache")
    assert f"image {path} (listed in {path.parent.parent / 'val.csv'}) cannot be read" in str(
        raised.value
    )
    leftovers = list((tmp_path / "cache").iterdir()) if (tmp_path / "cache").exists() else []
    assert leftovers == []  # no half-written conversion


def test_a_class_in_two_split_files_is_an_error(tmp_path):
    written = fakes.write_mini_imagenet_csv(tmp_path / "root")
    folder = tmp_path / "root" / "mini-imagenet"
    shared_class = next(iter(written["train"]))
    with open(folder / "test.csv", "a") as stream:
        stream.write(
            f"{written['train'][shared_class][0].replace('.jpg', 'x.jpg')},{shared_class}\n"
        )
    with pytest.raises(DatasetFormatError) as raised:
        read_split_files(locate_csv(tmp_path / "root"))  # type: ignore[arg-type]
    assert str(raised.value).startswith(
        f"class {shared_class} is in two split files, {folder / 'train.csv'} and "
        f"{folder / 'test.csv'}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,class\na.jpg,n1\n", "the first line must be the header 'filename,label', found"),
        ("filename,label\na.jpg\n", "line 2: expected 'filename,label', found 'a.jpg'"),
        ("filename,label\n", "lists no images"),
    ],
)
def test_a_malformed_split_file_is_named_with_its_line(tmp_path, content, message):
    fakes.write_mini_imagenet_csv(tmp_path / "root")
    (tmp_path / "root" / "mini-imagenet" / "train.csv").write_text(content)
    with pytest.raises(DatasetFormatError, match="train.csv") as raised:
        load(tmp_path / "root", tmp_path / "cache")
    assert message in str(raised.value)
