"""Data and cache locations, atomic writes that report a full disk, writability, moving aside."""

from __future__ import annotations

import errno

import pytest

from datasets.paths import (
    DatasetNotFoundError,
    WriteFailedError,
    atomic_write,
    move_aside,
    require_writable_dir,
    resolve_data_root,
)
from tests.datasets.fakes import read_only


def test_data_root_that_is_a_file_is_rejected_with_what_the_folder_must_hold(tmp_path):
    archive = tmp_path / "images_background.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(DatasetNotFoundError) as caught:
        resolve_data_root(archive, holds="omniglot/images_background.zip")
    message = str(caught.value)
    assert f"data root {archive} is a file, not a folder" in message
    assert "--data-root" in message and "omniglot/images_background.zip" in message
    assert resolve_data_root(tmp_path / "not-yet-there") == tmp_path / "not-yet-there"


def _full_disk(stream):
    stream.write(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")


def _torch_full_disk(stream):
    stream.write(b"half")
    raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")


@pytest.mark.parametrize("writer", [_full_disk, _torch_full_disk], ids=["oserror", "torch"])
def test_failed_write_names_the_file_the_cause_and_the_free_space(tmp_path, writer):
    target = tmp_path / "cache" / "data.pt"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(WriteFailedError) as caught:
        atomic_write(target, writer)
    message = str(caught.value)
    assert f"could not write {target}" in message
    assert "No space left on device" in message or "unexpected pos" in message
    assert f"free on the disk holding {target.parent}" in message
    assert "Fix: free space" in message and "--cache-dir" in message
    assert isinstance(caught.value, OSError) and caught.value.__cause__ is not None
    if writer is _full_disk:
        assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.pt"]  # no partial file
    assert target.read_bytes() == b"old"


def test_ctrl_c_during_a_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "records.npy"

    def interrupted(stream):
        stream.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_reported_with_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    require_writable_dir(folder / "new")  # creates it
    assert (folder / "new").is_dir() and list((folder / "new").iterdir()) == []
    with read_only(folder, monkeypatch), pytest.raises(PermissionError) as caught:
        require_writable_dir(folder)
    message = str(caught.value)
    assert f"cache folder {folder} is not writable" in message
    assert "choose another folder with --cache-dir or $FEWSHOT_CACHE_DIR" in message


def test_move_aside_replaces_an_older_damaged_copy(tmp_path):
    cache_file = tmp_path / "omniglot.pt"
    (tmp_path / "omniglot.pt.damaged").write_bytes(b"older")
    cache_file.write_bytes(b"newer")
    assert move_aside(cache_file) == tmp_path / "omniglot.pt.damaged"
    assert (tmp_path / "omniglot.pt.damaged").read_bytes() == b"newer" and not cache_file.exists()
    folder = tmp_path / "set"
    (tmp_path / "set.damaged").mkdir()
    (tmp_path / "set.damaged" / "old.npy").write_bytes(b"older")
    folder.mkdir()
    (folder / "meta.json").write_text("{")
    move_aside(folder)
    assert [p.name for p in (tmp_path / "set.damaged").iterdir()] == ["meta.json"]
