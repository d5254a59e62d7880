"""The converted cache: regrouping by class, statistics, fingerprint, memory mapping, failures."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.converted import (
    ImageFormat,
    PartSource,
    cache_directory,
    convert,
    open_cached,
    open_converted,
    to_array,
)
from datasets.paths import DamagedCacheWarning, DatasetFormatError, WriteFailedError
from tests.datasets.fakes import read_only


def random_images(count: int, side: int, seed: int) -> np.ndarray:
    """uint8 ``[count, side, side, 3]`` of seeded noise."""
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def _source(images: np.ndarray, labels: list[int], names: list[str], **extra) -> PartSource:
    return PartSource(class_names=names, labels=labels, read=images.__getitem__, **extra)


def test_to_array_keeps_stored_size_and_crops_other_shapes_to_the_centre():
    rgb = random_images(1, 8, seed=0)[0]
    assert np.array_equal(to_array(rgb, ImageFormat(8)), rgb.transpose(2, 0, 1))
    grey = to_array(Image.fromarray(rgb), ImageFormat(8, channels=1))
    assert grey.shape == (1, 8, 8)
    wide = np.full((20, 60), 255, dtype=np.uint8)
    wide[:, :10] = 0  # a black band at the left, well outside the centre square
    cropped = to_array(Image.fromarray(wide), ImageFormat(8, channels=3))
    assert cropped.shape == (3, 8, 8) and cropped.min() == 255  # cropped, not squashed


def test_convert_groups_classes_orders_them_by_key_and_releases_items(tmp_path):
    images = random_images(6, 4, seed=1)
    labels = [1, 0, 1, 0, 1, 0]
    released = []
    source = _source(
        images,
        labels,
        ["b", "a"],
        sort_keys=["z", "y", "x", "w", "v", "u"],
        release=released.append,
    )
    data = convert(
        tmp_path / "set", "toy", ImageFormat(4), [("train", lambda: source)], "here", False
    )
    part = data.parts["train"]
    assert part.class_names == ("b", "a")
    assert part.class_size.tolist() == [3, 3] and part.class_start.tolist() == [0, 3]
    # label 0 ("b"): items 1, 3, 5 with keys y, w, u -> stored as 5, 3, 1; then label 1 ("a")
    expected = images[[5, 3, 1, 4, 2, 0]].transpose(0, 3, 1, 2)
    assert np.array_equal(part.images.numpy(), expected)
    assert sorted(released) == list(range(6))
    assert not list(tmp_path.glob("*.part-*"))


def test_channel_stats_are_those_of_the_chosen_classes(tmp_path):
    images = random_images(6, 4, seed=2)
    source = _source(images, [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    data = convert(
        tmp_path / "set", "toy", ImageFormat(4), [("all", lambda: source)], "here", False
    )
    chosen = images[:4].reshape(-1, 3) / 255.0
    mean, std = data.channel_stats("all", [0, 1])
    assert np.allclose(mean, chosen.mean(0)) and np.allclose(std, chosen.std(0))
    split = data.split("toy/x/test", "all", [2], (mean, std))
    assert split.class_names == ("c",) and split.mean == mean
    batch = split.gather(torch.tensor([0]), torch.tensor([[0, 1]]))
    raw = torch.from_numpy(images[4:6].transpose(0, 3, 1, 2)).float() / 255
    assert torch.allclose(
        batch[0], (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    )


def test_fingerprint_follows_pixels_and_cache_is_mapped_copy_on_write(tmp_path):
    images = random_images(4, 4, seed=3)

    def make(pixels):
        return lambda: _source(pixels, [0, 0, 1, 1], ["a", "b"])

    first = convert(tmp_path / "one", "toy", ImageFormat(4), [("train", make(images))], "x", False)
    again = convert(tmp_path / "two", "toy", ImageFormat(4), [("train", make(images))], "x", False)
    assert first.fingerprint == again.fingerprint
    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1
    other = convert(
        tmp_path / "three", "toy", ImageFormat(4), [("train", make(changed))], "x", False
    )
    assert other.fingerprint != first.fingerprint
    first.parts["train"].images[0].zero_()  # writes stay in this process, not in the cache file
    reopened = open_converted(tmp_path / "one")
    assert np.array_equal(reopened.parts["train"].images[0].numpy(), images[0].transpose(2, 0, 1))


def test_failed_conversion_leaves_nothing_behind(tmp_path):
    images = random_images(2, 4, seed=4)

    def broken(index):
        if index == 1:
            raise OSError("disk gone")
        return images[index]

    with pytest.raises(OSError, match="disk gone"):
        convert(
            tmp_path / "set",
            "toy",
            ImageFormat(4),
            [("train", lambda: PartSource(["a"], [0, 0], broken))],
            "x",
            False,
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="classes without images: b"):
        convert(
            tmp_path / "set",
            "toy",
            ImageFormat(4),
            [("train", lambda: _source(images, [0, 0], ["a", "b"]))],
            "x",
            False,
        )


def test_cache_directory_depends_on_sources_and_format(tmp_path):
    a = cache_directory("toy", "files v1", ImageFormat(84), tmp_path)
    assert a == cache_directory("toy", "files v1", ImageFormat(84), tmp_path)
    assert a != cache_directory("toy", "files v2", ImageFormat(84), tmp_path)
    assert a != cache_directory("toy", "files v1", ImageFormat(32), tmp_path)
    assert a.parent == tmp_path and a.name.startswith("toy-84px-")


# --- damaged caches, unwritable or full disks, Ctrl-C --------------------------------------------


def _convert_toy(directory, read=None):
    images = random_images(4, 4, seed=5)
    source = PartSource(["a", "b"], [0, 0, 1, 1], read or images.__getitem__)
    return convert(directory, "toy", ImageFormat(4), [("train", lambda: source)], "x", False)


def _damage(directory, how: str) -> None:
    if how == "meta.json unreadable":
        (directory / "meta.json").write_text('{"name": "toy", "parts": ')
    elif how == "npy truncated":
        blob = (directory / "train.npy").read_bytes()
        (directory / "train.npy").write_bytes(blob[: len(blob) // 2])
    elif how == "npy wrong shape":
        np.save(directory / "train.npy", np.zeros((3, 3, 4, 4), dtype=np.uint8))
    elif how == "npy missing":
        (directory / "train.npy").unlink()
    else:
        (directory / "meta.json").unlink()


DAMAGES = ["meta.json unreadable", "npy truncated", "npy wrong shape", "npy missing", "no meta"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_cache_is_moved_aside_with_a_warning_then_converted_again(tmp_path, how):
    directory = tmp_path / "set"
    first = _convert_toy(directory)
    _damage(directory, how)
    (tmp_path / "set.damaged").mkdir()
    (tmp_path / "set.damaged" / "older").write_text("an older damaged copy")
    with pytest.warns(DamagedCacheWarning) as warned:
        assert open_cached(directory) is None
    message = str(warned[0].message)
    assert f"converted cache {directory} cannot be read" in message and "moved aside" in message
    assert not directory.exists() and not (tmp_path / "set.damaged" / "older").exists()
    again = _convert_toy(directory)
    assert again.fingerprint == first.fingerprint
    assert open_cached(directory).fingerprint == first.fingerprint


def test_open_converted_names_a_damaged_cache(tmp_path):
    directory = tmp_path / "set"
    _convert_toy(directory)
    _damage(directory, "npy truncated")
    with pytest.raises(DatasetFormatError, match=rf"converted cache {directory} is damaged.*mmap"):
        open_converted(directory)
    assert open_cached(tmp_path / "never-converted") is None


def test_unwritable_cache_dir_is_reported_before_any_image_is_read(tmp_path, monkeypatch):
    def no_reading(index):
        raise AssertionError("read an image although the cache could not be written")

    with read_only(tmp_path / "cache", monkeypatch), pytest.raises(PermissionError) as caught:
        _convert_toy(tmp_path / "cache" / "set", read=no_reading)
    assert f"cache folder {tmp_path / 'cache'} is not writable" in str(caught.value)
    assert "--cache-dir or $FEWSHOT_CACHE_DIR" in str(caught.value)


def test_finished_cache_opens_from_a_read_only_cache_dir(tmp_path, monkeypatch):
    first = _convert_toy(tmp_path / "cache" / "set")
    with read_only(tmp_path / "cache", monkeypatch):
        assert open_cached(tmp_path / "cache" / "set").fingerprint == first.fingerprint


def test_full_disk_while_converting_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full_disk, raising=False)
    with pytest.raises(WriteFailedError) as caught:
        _convert_toy(tmp_path / "set")
    message = str(caught.value)
    assert f"could not write {tmp_path}/set.part-" in message and "train.npy" in message
    assert "No space left on device" in message and "free on the disk holding" in message
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_converting_leaves_nothing_a_later_run_would_trust(tmp_path):
    images = random_images(4, 4, seed=5)

    def interrupted(index):
        if index == 2:
            raise KeyboardInterrupt
        return images[index]

    with pytest.raises(KeyboardInterrupt):
        _convert_toy(tmp_path / "set", read=interrupted)
    assert list(tmp_path.iterdir()) == []
    assert open_cached(tmp_path / "set") is None
    assert _convert_toy(tmp_path / "set").parts["train"].images.shape == (4, 3, 4, 4)
