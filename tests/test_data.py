"""CIFAR-10 loading, the decoded cache and the batched augmentation, on tiny fake datasets."""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hw2lib import data
from hw2lib.data import (
    ClassCountError,
    CorruptImageError,
    DatasetError,
    DatasetLayoutError,
    DatasetNotFoundError,
    DeviceLoader,
    EmptySplitError,
)

CLASSES = [f"class{i}" for i in range(10)]


def _pixels(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_imagefolder(
    root: Path, per_class: int = 2, classes: list[str] | None = None, ext: str = ".png"
) -> dict[str, list[np.ndarray]]:
    """Write train/ and test/ class folders of random images; return the pixels per split."""
    written: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, name in enumerate(classes or CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = _pixels(hash((split, label, index)) % 2**32)
                Image.fromarray(pixels).save(folder / f"{index:04d}{ext}")
                written[split].append(pixels)
    return written


def make_official(root: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write a fake cifar-10-batches-py/ folder; return each batch's data and labels."""
    folder = root / data.OFFICIAL_FOLDER
    folder.mkdir(parents=True)
    batches = {}
    rng = np.random.default_rng(0)
    for name in (*data.OFFICIAL_TRAIN_FILES, *data.OFFICIAL_TEST_FILES):
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as file:
            pickle.dump({"data": pixels, "labels": labels, "batch_label": name}, file)
        batches[name] = (pixels, labels)
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, file)
    return batches


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -----------------------------------------------------------------------------
# Both layouts


def test_imagefolder_loads_pixels_and_labels(tmp_path: Path, cache_dir: Path) -> None:
    written = make_imagefolder(tmp_path / "jpeg")
    split = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    assert split.images.shape == (20, 3, 32, 32)
    assert split.images.dtype == torch.uint8
    assert split.labels.dtype == torch.int64
    assert split.labels.tolist() == [label for label in range(10) for _ in range(2)]
    assert split.source.variant == data.VARIANT_IMAGEFOLDER
    assert split.source.label == "CIFAR-10 (JPEG copy)"
    # PNG is lossless, so the decoded pixels equal the written ones.
    expected = torch.from_numpy(np.stack(written["train"])).permute(0, 3, 1, 2)
    assert torch.equal(split.images, expected)


def test_imagefolder_reads_jpeg(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg", ext=".jpg")
    split = data.load_split(tmp_path / "jpeg", "test", cache_dir=cache_dir, progress=False)
    assert split.images.shape == (20, 3, 32, 32)


def test_official_layout_loads_batches(tmp_path: Path, cache_dir: Path) -> None:
    batches = make_official(tmp_path)
    train = data.load_split(tmp_path, "train", cache_dir=cache_dir)
    test = data.load_split(tmp_path, "test", cache_dir=cache_dir)
    assert train.source.variant == data.VARIANT_OFFICIAL
    assert train.source.label == "CIFAR-10 (official)"
    assert train.images.shape == (15, 3, 32, 32)
    assert test.images.shape == (3, 3, 32, 32)
    first_pixels, first_labels = batches["data_batch_1"]
    assert torch.equal(train.images[:3], torch.from_numpy(first_pixels.reshape(3, 3, 32, 32)))
    assert train.labels[:3].tolist() == first_labels


def test_official_layout_found_inside_batches_folder(tmp_path: Path, cache_dir: Path) -> None:
    make_official(tmp_path)
    split = data.load_split(tmp_path / data.OFFICIAL_FOLDER, "test", cache_dir=cache_dir)
    assert split.source.variant == data.VARIANT_OFFICIAL


def test_download_failure_raises_not_found(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetNotFoundError, match="downloading CIFAR-10 into"):
        data.locate(tmp_path / "empty", download=True)


# -----------------------------------------------------------------------------
# Cache


def test_cache_is_reused(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    first = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    second = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    assert not first.from_cache
    assert second.from_cache
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "garbage"])
def test_damaged_cache_is_rebuilt(tmp_path: Path, cache_dir: Path, caplog, damage: str) -> None:
    make_imagefolder(tmp_path / "jpeg")
    first = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    path = data.cache_path(first.source, "train", cache_dir)
    blob = bytearray(path.read_bytes())
    if damage == "flip_byte":
        blob[-100] ^= 0xFF
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = bytearray(b"not a cache")
    path.write_bytes(bytes(blob))

    with caplog.at_level(logging.WARNING, logger="hw2lib.data"):
        rebuilt = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    assert not rebuilt.from_cache
    assert "rebuilding" in caplog.text
    assert torch.equal(rebuilt.images, first.images)
    again = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    assert again.from_cache


def test_cache_write_is_atomic(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    make_imagefolder(tmp_path / "jpeg")
    first = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    path = data.cache_path(first.source, "train", cache_dir)
    before = path.read_bytes()

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        data._write_cache(path, {"images": torch.zeros(1)})
    assert path.read_bytes() == before
    assert [p.name for p in cache_dir.iterdir()] == [path.name]


def test_cache_rebuilt_when_source_changes(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    extra = tmp_path / "jpeg" / "train" / CLASSES[0] / "9999.png"
    Image.fromarray(_pixels(99)).save(extra)
    # Some file systems keep mtimes in whole seconds; move the folder's mtime on.
    folder = extra.parent
    stat = folder.stat()
    os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    split = data.load_split(tmp_path / "jpeg", "train", cache_dir=cache_dir, progress=False)
    assert not split.from_cache
    assert len(split) == 21


# -----------------------------------------------------------------------------
# Errors


def _load(path: Path, cache_dir: Path, split: str = "train") -> None:
    data.load_split(path, split, cache_dir=cache_dir, progress=False)


def test_missing_folder_error_names_path(tmp_path: Path, cache_dir: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as error:
        _load(missing, cache_dir)
    assert str(missing) in str(error.value)
    assert "--download" in str(error.value)


def test_wrong_layout_error(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "flat").mkdir()
    Image.fromarray(_pixels(0)).save(tmp_path / "flat" / "0000.png")
    with pytest.raises(DatasetLayoutError) as error:
        _load(tmp_path / "flat", cache_dir)
    assert str(tmp_path / "flat") in str(error.value)
    assert "train/ and test/" in str(error.value)


@pytest.mark.parametrize("inside", [False, True])
def test_empty_batches_folder_error(tmp_path: Path, cache_dir: Path, inside: bool) -> None:
    batches = tmp_path / "cifar" / data.OFFICIAL_FOLDER
    batches.mkdir(parents=True)
    data_dir = batches if inside else tmp_path / "cifar"
    with pytest.raises(DatasetLayoutError) as error:
        _load(data_dir, cache_dir)
    message = str(error.value)
    assert f"{batches} exists but contains none of the batch files" in message
    assert "data_batch_1" in message
    assert "test_batch" in message
    assert "--download" in message
    assert "cifar-10-python.tar.gz" in message
    assert "neither" not in message


def test_split_folder_error_hints_parent(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg", per_class=1)
    with pytest.raises(DatasetLayoutError) as error:
        _load(tmp_path / "jpeg" / "train", cache_dir)
    message = str(error.value)
    assert "looks like the train/ split" in message
    assert f"--data-dir {tmp_path / 'jpeg'}" in message


def test_missing_test_split_error(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    for path in sorted((tmp_path / "jpeg" / "test").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "jpeg" / "test").rmdir()
    with pytest.raises(DatasetLayoutError, match="test"):
        _load(tmp_path / "jpeg", cache_dir, split="test")


def test_corrupt_image_error_names_file(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    bad = tmp_path / "jpeg" / "train" / CLASSES[3] / "0001.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(CorruptImageError) as error:
        _load(tmp_path / "jpeg", cache_dir)
    assert str(bad) in str(error.value)


def test_truncated_jpeg_error(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg", ext=".jpg")
    bad = tmp_path / "jpeg" / "train" / CLASSES[5] / "0000.jpg"
    buffer = io.BytesIO()
    Image.fromarray(_pixels(5)).save(buffer, format="JPEG", quality=75)
    bad.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CorruptImageError) as error:
        _load(tmp_path / "jpeg", cache_dir)
    assert str(bad) in str(error.value)


def test_wrong_image_size_error(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    bad = tmp_path / "jpeg" / "train" / CLASSES[2] / "0000.png"
    Image.fromarray(_pixels(2, size=40)).save(bad)
    with pytest.raises(CorruptImageError, match="32x32"):
        _load(tmp_path / "jpeg", cache_dir)


def test_class_count_error(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg", classes=CLASSES[:9])
    with pytest.raises(ClassCountError) as error:
        _load(tmp_path / "jpeg", cache_dir)
    assert "9 class folders" in str(error.value)
    assert str(tmp_path / "jpeg" / "train") in str(error.value)


def test_class_names_differ_between_splits(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    (tmp_path / "jpeg" / "test" / CLASSES[9]).rename(tmp_path / "jpeg" / "test" / "other")
    with pytest.raises(ClassCountError, match="differ"):
        _load(tmp_path / "jpeg", cache_dir)


def test_empty_class_folder_error(tmp_path: Path, cache_dir: Path) -> None:
    make_imagefolder(tmp_path / "jpeg")
    folder = tmp_path / "jpeg" / "train" / CLASSES[4]
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(EmptySplitError) as error:
        _load(tmp_path / "jpeg", cache_dir)
    assert str(folder) in str(error.value)


def test_official_missing_batch_error(tmp_path: Path, cache_dir: Path) -> None:
    make_official(tmp_path)
    missing = tmp_path / data.OFFICIAL_FOLDER / "data_batch_3"
    missing.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        _load(tmp_path, cache_dir)
    assert str(missing) in str(error.value)


def test_official_corrupt_batch_error(tmp_path: Path, cache_dir: Path) -> None:
    make_official(tmp_path)
    bad = tmp_path / data.OFFICIAL_FOLDER / "test_batch"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CorruptImageError) as error:
        _load(tmp_path, cache_dir, split="test")
    assert str(bad) in str(error.value)


def test_official_label_out_of_range(tmp_path: Path, cache_dir: Path) -> None:
    make_official(tmp_path)
    path = tmp_path / data.OFFICIAL_FOLDER / "test_batch"
    with open(path, "wb") as file:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 12]}, file)
    with pytest.raises(ClassCountError, match="10 classes were expected"):
        _load(tmp_path, cache_dir, split="test")


def test_official_empty_split(tmp_path: Path, cache_dir: Path) -> None:
    make_official(tmp_path)
    path = tmp_path / data.OFFICIAL_FOLDER / "test_batch"
    with open(path, "wb") as file:
        pickle.dump({"data": np.zeros((0, 3072), np.uint8), "labels": []}, file)
    with pytest.raises(EmptySplitError):
        _load(tmp_path, cache_dir, split="test")


def test_every_error_is_a_dataset_error() -> None:
    for error_type in (
        DatasetNotFoundError,
        DatasetLayoutError,
        CorruptImageError,
        ClassCountError,
        EmptySplitError,
    ):
        assert issubclass(error_type, DatasetError)


# -----------------------------------------------------------------------------
# Augmentation and batches


def test_crop_flip_keeps_shape_and_dtype() -> None:
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    out = data.random_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert out.dtype == torch.uint8


def test_crop_flip_is_deterministic_per_seed() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    first = data.random_crop_flip(images, torch.Generator().manual_seed(3))
    second = data.random_crop_flip(images, torch.Generator().manual_seed(3))
    other = data.random_crop_flip(images, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_crop_flip_outputs_padded_windows() -> None:
    """Every output is a window of the zero-padded input, flipped or not."""
    images = torch.randint(1, 256, (12, 3, 8, 8), dtype=torch.uint8)
    out = data.random_crop_flip(images, torch.Generator().manual_seed(1), padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    seen_flip = seen_plain = False
    for image, result in zip(padded, out, strict=True):
        matches = []
        for dy in range(5):
            for dx in range(5):
                window = image[:, dy : dy + 8, dx : dx + 8]
                if torch.equal(window, result):
                    matches.append("plain")
                if torch.equal(window.flip(2), result):
                    matches.append("flip")
        assert matches, "output is no window of the padded image"
        seen_flip |= "flip" in matches
        seen_plain |= "plain" in matches
    assert seen_flip
    assert seen_plain


def test_device_loader_train_batches() -> None:
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    loader = DeviceLoader(images, labels, 32, train=True, seed=5)
    batches = list(loader.epoch(0))
    assert len(loader) == 3
    assert len(batches) == 3
    assert all(b[0].shape == (32, 3, 32, 32) for b in batches)
    again = list(loader.epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    next_epoch = list(loader.epoch(1))
    assert not torch.equal(batches[0][1], next_epoch[0][1])


def test_device_loader_eval_covers_all_in_order() -> None:
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10)
    loader = DeviceLoader(images, labels, 4, train=False)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), images)
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(10))


def test_balanced_subset_counts() -> None:
    labels = torch.arange(1000) % 10
    index = data.balanced_subset(labels, 95, seed=0)
    counts = torch.bincount(labels[index], minlength=10)
    assert len(index) == 95
    assert counts.max() - counts.min() <= 1
    assert torch.equal(index, data.balanced_subset(labels, 95, seed=0))
    assert len(data.balanced_subset(labels, None)) == 1000


def test_balanced_subset_nested_in_larger() -> None:
    labels = torch.randperm(10_000, generator=torch.Generator().manual_seed(3)) % 10
    small = set(data.balanced_subset(labels, 1_000, seed=0).tolist())
    large = set(data.balanced_subset(labels, 2_000, seed=0).tolist())
    assert small < large


def test_content_digest_tracks_images_and_labels() -> None:
    split = data.synthetic_split(40)
    same = data.synthetic_split(40)
    assert split.content_digest() == same.content_digest()

    relabelled = data.synthetic_split(40)
    relabelled.labels = relabelled.labels.roll(1)
    assert relabelled.content_digest() != split.content_digest()

    repainted = data.synthetic_split(40)
    repainted.images = repainted.images.clone()
    repainted.images[0, 0, 0, 0] ^= 1
    assert repainted.content_digest() != split.content_digest()


def test_normalize_centers_mean_pixel() -> None:
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1) * 255
    images = mean.round().to(torch.uint8).expand(2, 3, 4, 4)
    assert normalized_abs_max(data.normalize(images)) < 0.02


def normalized_abs_max(tensor: torch.Tensor) -> float:
    return float(tensor.abs().max())
