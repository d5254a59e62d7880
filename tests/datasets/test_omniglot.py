"""Omniglot: the official layout as archives or folders, the cache, the splits, the errors."""

from __future__ import annotations

import io
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import omniglot as omniglot_module
from datasets.omniglot import OFFICIAL_FINGERPRINT, load_omniglot, omniglot_split
from datasets.paths import DatasetNotFoundError


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
        ("lake", "train", 964),
        ("lake", "test", 659),
    ],
)
def test_split_class_counts(omniglot, scheme, split, classes):
    part = omniglot_split(omniglot, scheme, split)
    assert part.num_classes == classes
    assert bool((part.class_size == 20).all())
    assert part.image_shape == (1, 28, 28)


def test_vinyals_splits_are_disjoint_and_lake_has_no_rotations(omniglot):
    names = {s: set(omniglot_split(omniglot, "vinyals", s).class_names) for s in ("train", "val", "test")}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    lake = omniglot_split(omniglot, "lake", "train")
    assert bool((lake.class_rotation == 0).all())


def test_real_data_matches_the_official_pixels(omniglot):
    assert omniglot.images.shape == (32460, 1, 28, 28)
    assert len(omniglot.characters) == 1623
    assert omniglot.fingerprint == OFFICIAL_FINGERPRINT
    assert omniglot.matches_official
    # ink is bright, background dark, after the 105 -> 28 resize
    first = omniglot.images[0].float()
    assert first.mean() < 80 and first.max() > 200


def test_unknown_scheme_or_split_lists_the_valid_ones(omniglot):
    with pytest.raises(ValueError, match="valid: vinyals, lake"):
        omniglot_split(omniglot, "ravi", "train")
    with pytest.raises(ValueError, match="valid: train, test"):
        omniglot_split(omniglot, "lake", "val")


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
