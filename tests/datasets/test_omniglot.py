"""Omniglot: the official layout as archives or folders, the cache, the splits, the errors."""

from __future__ import annotations

import io
import shutil
import urllib.error
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import omniglot as omniglot_module
from datasets.omniglot import OFFICIAL_FINGERPRINT, load_omniglot, omniglot_split
from datasets.paths import (
    DamagedCacheWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    WriteFailedError,
)
from tests.datasets.fakes import read_only


def _split_file(data_root: Path, split: str) -> set[str]:
    lines = (data_root / "omniglot" / "splits" / "vinyals" / f"{split}.txt").read_text().split()
    return set(lines)


@pytest.mark.parametrize("split", ["train", "val", "test", "trainval"])
def test_vinyals_rule_yields_exactly_the_standard_class_lists(omniglot, data_root, split):
    ours = omniglot_split(omniglot, "vinyals", split).class_names
    assert len(ours) == len(set(ours))
    assert set(ours) == _split_file(data_root, split)


@pytest.mark.parametrize(
    ("scheme", "split", "classes"),
    [
        ("vinyals", "train", 4112),
        ("vinyals", "val", 688),
        ("vinyals", "test", 1692),
        ("vinyals", "trainval", 4800),
        ("lake", "train", 792),
        ("lake", "val", 172),
        ("lake", "trainval", 964),
        ("lake", "test", 659),
        ("lake-rotated", "train", 4 * 792),
        ("lake-rotated", "val", 172),
        ("lake-rotated", "trainval", 4 * 964),
        ("lake-rotated", "test", 659),
    ],
)
def test_split_class_counts(omniglot, scheme, split, classes):
    part = omniglot_split(omniglot, scheme, split)
    assert part.num_classes == classes
    assert bool((part.class_size == 20).all())
    assert part.image_shape == (1, 28, 28)


def test_vinyals_splits_are_disjoint_and_lake_has_no_rotations(omniglot):
    names = {
        s: set(omniglot_split(omniglot, "vinyals", s).class_names) for s in ("train", "val", "test")
    }
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    lake = omniglot_split(omniglot, "lake", "train")
    assert bool((lake.class_rotation == 0).all())
    held_out = {name.split("/")[0] for name in omniglot_split(omniglot, "lake", "val").class_names}
    assert held_out == {"Hebrew", "Mkhedruli_(Georgian)", "Armenian", "Early_Aramaic", "Bengali"}
    assert not held_out & {name.split("/")[0] for name in lake.class_names}


def test_lake_rotated_rotates_training_characters_only(omniglot):
    rotated = omniglot_split(omniglot, "lake-rotated", "train")
    plain = omniglot_split(omniglot, "lake", "train")
    assert sorted(rotated.class_rotation.unique().tolist()) == [0, 1, 2, 3]
    assert {name.rpartition("/")[0] for name in rotated.class_names} == set(plain.class_names)
    assert rotated.class_group[:4] == (plain.class_group[0],) * 4  # alphabets are kept
    for split in ("val", "test"):
        upright = omniglot_split(omniglot, "lake-rotated", split)
        assert upright.class_names == omniglot_split(omniglot, "lake", split).class_names
        assert bool((upright.class_rotation == 0).all())


def test_real_data_matches_the_official_pixels(omniglot):
    assert omniglot.images.shape == (32460, 1, 28, 28)
    assert len(omniglot.characters) == 1623
    assert omniglot.fingerprint == OFFICIAL_FINGERPRINT
    assert omniglot.matches_official
    # ink is bright, background dark, after the 105 -> 28 resize
    first = omniglot.images[0].float()
    assert first.mean() < 80 and first.max() > 200


def test_unknown_scheme_or_split_lists_the_valid_ones(omniglot):
    with pytest.raises(ValueError, match="valid: vinyals, lake, lake-rotated"):
        omniglot_split(omniglot, "ravi", "train")
    with pytest.raises(ValueError, match="valid: train, val, test, trainval"):
        omniglot_split(omniglot, "lake", "validation")


# --- a tiny dataset in the official layout, built from real drawings -----------------------------


def _tiny_official_layout(data_root: Path, target: Path, as_zip: bool) -> None:
    """Two characters of one alphabet per subset, real PNG bytes, official member names."""
    sources = omniglot_module.find_sources(data_root)
    for subset in omniglot_module.SUBSETS:
        members = list(omniglot_module._members(subset, sources[subset]))[:40]
        if as_zip:
            with zipfile.ZipFile(target / f"{subset}.zip", "w") as archive:
                for name, blob in members:
                    archive.writestr(name, blob)
        else:
            for name, blob in members:
                path = target / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob)


def test_archive_and_extracted_folder_load_identically(data_root, tmp_path):
    zipped, extracted = tmp_path / "zipped" / "omniglot", tmp_path / "extracted"
    zipped.mkdir(parents=True)
    extracted.mkdir()
    _tiny_official_layout(data_root, zipped, as_zip=True)
    _tiny_official_layout(data_root, extracted, as_zip=False)  # directly under the root
    a = load_omniglot(zipped.parent, cache_dir=tmp_path / "c1", download=False, progress=False)
    b = load_omniglot(extracted, cache_dir=tmp_path / "c2", download=False, progress=False)
    assert a.characters == b.characters and len(a.characters) == 4
    assert torch.equal(a.images, b.images)
    assert a.fingerprint == b.fingerprint
    assert not a.matches_official  # a subset is not the official dataset


def test_fingerprint_depends_on_pixels_not_on_archive_bytes(data_root, tmp_path):
    stored, deflated = tmp_path / "stored", tmp_path / "deflated"
    for root, compression in ((stored, zipfile.ZIP_STORED), (deflated, zipfile.ZIP_DEFLATED)):
        root.mkdir()
        sources = omniglot_module.find_sources(data_root)
        for subset in omniglot_module.SUBSETS:
            with zipfile.ZipFile(root / f"{subset}.zip", "w", compression) as archive:
                for name, blob in list(omniglot_module._members(subset, sources[subset]))[:20]:
                    archive.writestr(name, blob)
    assert (stored / "images_background.zip").read_bytes() != (
        deflated / "images_background.zip"
    ).read_bytes()
    a = load_omniglot(stored, cache_dir=tmp_path / "c1", download=False, progress=False)
    b = load_omniglot(deflated, cache_dir=tmp_path / "c2", download=False, progress=False)
    assert a.fingerprint == b.fingerprint
    # one changed pixel changes the fingerprint
    changed = tmp_path / "changed"
    shutil.copytree(deflated, changed)
    with zipfile.ZipFile(changed / "images_background.zip") as archive:
        names = archive.namelist()
        blobs = {n: archive.read(n) for n in names}
    pixels = np.array(Image.open(io.BytesIO(blobs[names[0]])).convert("L"))
    pixels[50, 50] = 255 - pixels[50, 50]
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    blobs[names[0]] = buffer.getvalue()
    with zipfile.ZipFile(changed / "images_background.zip", "w") as archive:
        for name in names:
            archive.writestr(name, blobs[name])
    c = load_omniglot(changed, cache_dir=tmp_path / "c3", download=False, progress=False)
    assert c.fingerprint != a.fingerprint


def test_second_load_reads_the_cache_in_the_cache_dir(data_root, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    _tiny_official_layout(data_root, root, as_zip=True)
    cache = tmp_path / "cache"
    first = load_omniglot(root, image_size=20, cache_dir=cache, download=False, progress=False)
    cached = list(cache.glob("omniglot-20px-*.pt"))
    assert len(cached) == 1
    assert not list(root.glob("*.pt"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(omniglot_module, "_decode", no_decoding)
    second = load_omniglot(root, image_size=20, cache_dir=cache, download=False, progress=False)
    assert torch.equal(first.images, second.images) and second.images.shape[-1] == 20
    assert second.fingerprint == first.fingerprint


def test_missing_and_offline_gives_a_clear_error(tmp_path, monkeypatch):
    def offline(url, filename):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(omniglot_module.urllib.request, "urlretrieve", offline)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_omniglot(tmp_path, cache_dir=tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert "missing images_background and images_evaluation" in message
    assert str(tmp_path / "omniglot") in message
    assert "download of https://" in message and "name resolution" in message
    assert "--data-root" in message and "FEWSHOT_DATA_ROOT" in message
    assert not list((tmp_path / "omniglot").glob("*.part"))


def test_missing_without_download_says_so(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"download=False"):
        load_omniglot(tmp_path, download=False, progress=False)


def test_download_places_official_archives_and_loads_them(data_root, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    _tiny_official_layout(data_root, served, as_zip=True)
    requested = []

    def fake_urlretrieve(url, filename):
        requested.append(url)
        shutil.copy(served / Path(url).name, filename)

    digests = {
        s: omniglot_module.hashlib.md5((served / f"{s}.zip").read_bytes()).hexdigest()
        for s in omniglot_module.SUBSETS
    }
    monkeypatch.setattr(omniglot_module.urllib.request, "urlretrieve", fake_urlretrieve)
    monkeypatch.setattr(omniglot_module, "OFFICIAL_MD5", digests)
    root = tmp_path / "root"
    data = load_omniglot(root, cache_dir=tmp_path / "cache", progress=False)
    assert [Path(u).name for u in requested] == ["images_background.zip", "images_evaluation.zip"]
    assert all(u.startswith("https://") for u in requested)
    assert (root / "omniglot" / "images_background.zip").is_file()
    assert len(data.characters) == 4


def test_download_with_wrong_checksum_is_discarded(data_root, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    _tiny_official_layout(data_root, served, as_zip=True)
    monkeypatch.setattr(
        omniglot_module.urllib.request,
        "urlretrieve",
        lambda url, filename: shutil.copy(served / Path(url).name, filename),
    )
    with pytest.raises(DatasetNotFoundError, match="MD5"):
        load_omniglot(tmp_path / "root", cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "root" / "omniglot").iterdir())


# --- damaged or unusual input: a synthetic dataset in the official layout ------------------------

_LAYOUT = "images_background/<Alphabet>/characterNN/XXXX_YY.png"


def _drawing(seed: int, side: int = 105) -> bytes:
    """A 1-bit PNG of seeded noise, like an Omniglot drawing."""
    pixels = np.random.default_rng(seed).random((side, side)) > 0.2
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _synthetic_members() -> dict[str, list[tuple[str, bytes]]]:
    """Per subset, two characters of two drawings each, with official member names."""
    return {
        subset: [
            (f"{subset}/Alpha_{s}/character0{c}/0{s}0{c}_0{d}.png", _drawing(100 * s + 10 * c + d))
            for c in (1, 2)
            for d in (1, 2)
        ]
        for s, subset in enumerate(omniglot_module.SUBSETS)
    }


def _write_synthetic(root: Path, as_zip: bool = True, **replace) -> Path:
    """``root/omniglot/<subset>.zip`` (or extracted folders); ``replace`` maps a subset to the
    ``(name, bytes)`` members to write instead. Returns ``root``."""
    target = root / "omniglot"
    target.mkdir(parents=True, exist_ok=True)
    for subset, members in {**_synthetic_members(), **replace}.items():
        if as_zip:
            with zipfile.ZipFile(target / f"{subset}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
                for name, blob in members:
                    archive.writestr(name, blob)
            continue
        for name, blob in members:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(blob)
    return root


def _load(root: Path, cache: Path):
    return load_omniglot(root, image_size=8, cache_dir=cache, download=False, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_unreadable_archive_is_named_not_reported_missing(tmp_path, damage):
    root = _write_synthetic(tmp_path / "root")
    archive = root / "omniglot" / "images_evaluation.zip"
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else bytes(range(256)) * 4)
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    message = str(caught.value)
    assert f"Omniglot archive {archive} is not a readable zip archive" in message
    assert "truncated or damaged download" in message
    assert "replace it with the official images_evaluation.zip, or delete it" in message


def test_archive_without_drawings_names_the_expected_layout(tmp_path):
    root = _write_synthetic(tmp_path / "root", images_background=[("readme.txt", b"empty")])
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    message = str(caught.value)
    assert f"archive {root / 'omniglot' / 'images_background.zip'} holds no PNG drawings" in message
    assert _LAYOUT in message


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"]
)
def test_member_with_damaged_data_is_named(tmp_path, compression):
    root = _write_synthetic(tmp_path / "root")
    archive = root / "omniglot" / "images_background.zip"
    members = _synthetic_members()["images_background"]
    with zipfile.ZipFile(archive, "w", compression) as rewritten:
        for name, blob in members:
            rewritten.writestr(name, blob)
    with zipfile.ZipFile(archive) as readable:
        info = readable.infolist()[1]
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in range(start + 10, start + 20):  # inside the member's data
        data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    message = str(caught.value)
    assert f"Omniglot archive {archive} is damaged: member {info.filename} cannot" in message
    assert "Fix: replace it with the official images_background.zip" in message


def test_member_one_folder_too_deep_is_named_with_the_layout(tmp_path):
    deep = "images_background/extra/Alpha_0/character01/0001_01.png"
    members = _synthetic_members()["images_background"] + [(deep, _drawing(7))]
    root = _write_synthetic(tmp_path / "root", images_background=members)
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    message = str(caught.value)
    assert f"member {deep} is not in the official layout {_LAYOUT}" in message


def test_extracted_folder_one_level_too_deep_names_the_layout(tmp_path):
    members = [
        (name.replace("images_background/", "images_background/extra/"), blob)
        for name, blob in _synthetic_members()["images_background"]
    ]
    root = _write_synthetic(tmp_path / "root", as_zip=False, images_background=members)
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    message = str(caught.value)
    assert f"folder {root / 'omniglot' / 'images_background'} holds no PNG drawings" in message
    assert _LAYOUT in message and "found extra/Alpha_0/" in message


@pytest.mark.parametrize("as_zip", [True, False], ids=["archive", "folder"])
def test_undecodable_drawing_is_named(tmp_path, as_zip):
    members = _synthetic_members()["images_evaluation"]
    broken = members[2][0]
    members[2] = (broken, b"\x89PNG\r\n\x1a\n but not really")
    root = _write_synthetic(tmp_path / "root", as_zip=as_zip, images_evaluation=members)
    with pytest.raises(DatasetFormatError) as caught:
        _load(root, tmp_path / "cache")
    base = root / "omniglot"
    where = (
        f"member {broken} of archive {base / 'images_evaluation.zip'}"
        if as_zip
        else f"file {base / broken}"
    )
    assert f"cannot decode {where} as an image" in str(caught.value)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_decompression_bomb_is_a_format_error_naming_the_member(tmp_path, monkeypatch):
    root = _write_synthetic(tmp_path / "root")
    # 105 x 105 drawings against a limit of 1000 pixels: past twice the limit, as a 14000 x 14000
    # image is against the default one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    pattern = r"cannot decode member images_background/.*DecompressionBombError"
    with pytest.raises(DatasetFormatError, match=pattern):
        _load(root, tmp_path / "cache")


def test_hidden_macos_members_are_skipped(tmp_path):
    plain = _load(_write_synthetic(tmp_path / "plain"), tmp_path / "c1")
    members = _synthetic_members()["images_background"]
    members.append(("images_background/Alpha_0/character01/._0001_01.png", b"AppleDouble"))
    members.append(("__MACOSX/images_background/Alpha_0/._character01.png", b"AppleDouble"))
    mac = _load(_write_synthetic(tmp_path / "mac", images_background=members), tmp_path / "c2")
    assert mac.fingerprint == plain.fingerprint and torch.equal(mac.images, plain.images)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other content"])
def test_damaged_cache_is_moved_aside_and_rebuilt(tmp_path, damage):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"
    first = _load(root, cache)
    (cache_file,) = cache.glob("omniglot-8px-*.pt")
    blob = cache_file.read_bytes()
    if damage == "other content":
        torch.save({"images": torch.zeros(3)}, cache_file)
    else:
        damaged = {"truncated": blob[: len(blob) // 2], "garbage": b"x" * 99, "empty": b""}
        cache_file.write_bytes(damaged[damage])
    (cache / f"{cache_file.name}.damaged").write_bytes(b"an older damaged copy")
    with pytest.warns(DamagedCacheWarning) as warned:
        again = _load(root, cache)
    message = str(warned[0].message)
    assert f"Omniglot cache {cache_file} cannot be read" in message
    assert "moved aside" in message and "will be rebuilt" in message
    assert torch.equal(again.images, first.images) and again.fingerprint == first.fingerprint
    assert (cache / f"{cache_file.name}.damaged").read_bytes() != b"an older damaged copy"
    assert torch.equal(torch.load(cache_file, weights_only=True)["images"], first.images)


def test_unwritable_cache_dir_is_reported_before_decoding(tmp_path, monkeypatch):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache could not be written")

    monkeypatch.setattr(omniglot_module, "_decode", no_decoding)
    with read_only(cache, monkeypatch), pytest.raises(PermissionError) as caught:
        _load(root, cache)
    message = str(caught.value)
    assert f"cache folder {cache} is not writable" in message
    assert "--cache-dir or $FEWSHOT_CACHE_DIR" in message


def test_existing_cache_loads_from_a_read_only_cache_dir(tmp_path, monkeypatch):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"
    first = _load(root, cache)
    with read_only(cache, monkeypatch):
        again = _load(root, cache)
    assert torch.equal(again.images, first.images)


def test_data_root_that_is_a_file_says_so(tmp_path):
    root = _write_synthetic(tmp_path / "root")
    archive = root / "omniglot" / "images_background.zip"
    with pytest.raises(DatasetNotFoundError) as caught:
        _load(archive, tmp_path / "cache")
    message = str(caught.value)
    assert f"data root {archive} is a file, not a folder" in message
    assert "omniglot/images_background.zip and omniglot/images_evaluation.zip" in message


def test_full_disk_while_writing_the_cache_names_the_file(tmp_path, monkeypatch):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"

    def full_disk(payload, stream):
        stream.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 512 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteFailedError) as caught:
        _load(root, cache)
    message = str(caught.value)
    assert f"could not write {cache}/omniglot-8px-" in message and "unexpected pos" in message
    assert f"free on the disk holding {cache}" in message
    assert list(cache.iterdir()) == []


def test_ctrl_c_while_writing_the_cache_leaves_nothing_to_trust(tmp_path, monkeypatch):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"
    save = torch.save

    def interrupted(payload, stream):
        stream.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _load(root, cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(torch, "save", save)
    assert len(_load(root, cache).characters) == 4


def test_a_cache_from_before_drawers_were_kept_is_decoded_again_without_a_warning(tmp_path):
    root, cache = _write_synthetic(tmp_path / "root"), tmp_path / "cache"
    first = _load(root, cache)
    (cache_file,) = cache.glob("omniglot-8px-*.pt")
    payload = torch.load(cache_file, weights_only=True)
    del payload["drawers"]
    torch.save(payload, cache_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _load(root, cache)
    assert torch.equal(again.drawers, first.drawers) and "drawers" in torch.load(
        cache_file, weights_only=True
    )
