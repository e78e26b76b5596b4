"""CIFAR-10 as uint8 tensors on the training device, augmented there in batches.

Two on-disk layouts are read:

* the official Python pickles, ``cifar-10-batches-py/`` (what
  ``torchvision.datasets.CIFAR10`` reads), downloaded with ``download=True``
  where a network exists;
* an ImageFolder tree, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, such
  as the JPEG re-encoding of CIFAR-10 at quality 75. Figures measured on that
  copy are labelled "CIFAR-10 (JPEG copy)" because its pixels differ from the
  official batches.

Each split is decoded once into ``images`` (N, 3, 32, 32) uint8 and ``labels``
(N,) int64 and cached on disk. The cache file starts with a BLAKE2b digest of
its payload; a file whose digest does not match is rebuilt from the source.

Training never runs per-image Python transforms: :class:`DeviceLoader` keeps a
split on the device and crops and flips whole batches with tensor indexing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel mean and standard deviation of the official CIFAR-10 training
# images, in units of pixel value / 255.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

OFFICIAL_FOLDER = "cifar-10-batches-py"
OFFICIAL_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
OFFICIAL_TEST_FILES = ("test_batch",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

VARIANT_OFFICIAL = "official"
VARIANT_IMAGEFOLDER = "imagefolder"
VARIANT_SYNTHETIC = "synthetic"
# Names that figures give the data they were measured on. The ImageFolder label
# assumes the JPEG re-encoding, the only ImageFolder copy this project reads.
VARIANT_LABELS = {
    VARIANT_OFFICIAL: "CIFAR-10 (official)",
    VARIANT_IMAGEFOLDER: "CIFAR-10 (JPEG copy)",
    VARIANT_SYNTHETIC: "synthetic CIFAR-10-shaped data",
}

CACHE_MAGIC = b"HW2LIBC1"
CACHE_FORMAT_VERSION = 1
_DIGEST_SIZE = 32

_FIX_HINT = (
    "pass --download, or point --data-dir at a folder with cifar-10-batches-py/ "
    "or train/ and test/ class folders"
)


# -----------------------------------------------------------------------------
# Errors


class DatasetError(RuntimeError):
    """The dataset on disk cannot be used; the message names the path and the fix."""


class DatasetNotFoundError(DatasetError):
    """No CIFAR-10 data at the given path."""


class DatasetLayoutError(DatasetError):
    """A folder exists but does not have either supported layout."""


class CorruptImageError(DatasetError):
    """An image file or a pickle batch cannot be decoded, or has the wrong size."""


class ClassCountError(DatasetError):
    """The splits do not have the expected classes."""


class EmptySplitError(DatasetError):
    """A split, or a class folder inside it, contains no images."""


class DatasetTooSmallError(DatasetError):
    """A split has fewer images than the requested run trains or evaluates on."""


# -----------------------------------------------------------------------------
# Locating the data


@dataclass(frozen=True)
class DataSource:
    """Location and layout of a CIFAR-10 copy."""

    root: Path  # the folder holding the batches, or holding train/ and test/
    variant: str  # VARIANT_OFFICIAL or VARIANT_IMAGEFOLDER

    @property
    def label(self) -> str:
        return VARIANT_LABELS[self.variant]


def locate(data_dir: str | os.PathLike[str], *, download: bool = False) -> DataSource:
    """Find CIFAR-10 under ``data_dir`` and return its layout.

    Accepted: ``data_dir/cifar-10-batches-py/``, ``data_dir`` being that folder
    itself, or ``data_dir/train/<class>/`` with ``data_dir/test/<class>/``.
    With ``download=True`` and no data present, the official archive is
    downloaded into ``data_dir`` through torchvision.

    Raises:
        DatasetNotFoundError: ``data_dir`` does not exist, or the download failed.
        DatasetLayoutError: ``data_dir`` exists but has neither layout.
    """
    root = Path(data_dir).expanduser()
    for candidate in (root / OFFICIAL_FOLDER, root):
        if (candidate / OFFICIAL_TRAIN_FILES[0]).exists() or (candidate / "test_batch").exists():
            return DataSource(candidate.resolve(), VARIANT_OFFICIAL)
    if (root / "train").is_dir() or (root / "test").is_dir():
        return DataSource(root.resolve(), VARIANT_IMAGEFOLDER)

    if download:
        _download_official(root)
        return DataSource((root / OFFICIAL_FOLDER).resolve(), VARIANT_OFFICIAL)
    if not root.exists():
        raise DatasetNotFoundError(f"CIFAR-10 not found: {root} does not exist; {_FIX_HINT}")
    raise DatasetLayoutError(_layout_message(root))


def _layout_message(root: Path) -> str:
    """Describe why the existing folder ``root`` contains no CIFAR-10 copy, and the fix."""
    batches_dir = next(
        (
            folder
            for folder in (root / OFFICIAL_FOLDER, root)
            if folder.name == OFFICIAL_FOLDER and folder.is_dir()
        ),
        None,
    )
    if batches_dir is not None:
        return (
            f"CIFAR-10 not found in {root}: {batches_dir} exists but contains none of the "
            f"batch files {', '.join(OFFICIAL_TRAIN_FILES + OFFICIAL_TEST_FILES)}; pass "
            "--download to fetch them, or copy the contents of the cifar-10-batches-py/ "
            "folder of the official archive cifar-10-python.tar.gz into it"
        )
    has_class_folders = any(entry.is_dir() for entry in root.iterdir())
    if root.name in ("train", "test") and has_class_folders:
        return (
            f"CIFAR-10 not found in {root}: it looks like the {root.name}/ split of an "
            f"ImageFolder copy; pass its parent folder, --data-dir {root.parent}, which "
            "holds both train/ and test/"
        )
    return (
        f"CIFAR-10 not found in {root}: it has neither {OFFICIAL_FOLDER}/ nor train/ and "
        f"test/ class folders; {_FIX_HINT}"
    )


def _download_official(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise DatasetNotFoundError(
            f"downloading CIFAR-10 into {root} failed ({error}); check the network, or "
            f"point --data-dir at a folder with {OFFICIAL_FOLDER}/ or train/ and test/ "
            "class folders"
        ) from error


# -----------------------------------------------------------------------------
# Decoding a split


def _read_official(root: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    names = OFFICIAL_TRAIN_FILES if split == "train" else OFFICIAL_TEST_FILES
    images, labels = [], []
    for name in names:
        path = root / name
        if not path.exists():
            raise DatasetLayoutError(
                f"{path} is missing: an official CIFAR-10 folder has "
                f"{', '.join(OFFICIAL_TRAIN_FILES + OFFICIAL_TEST_FILES)}; "
                "download it again with --download"
            )
        try:
            with open(path, "rb") as file:
                batch = pickle.load(file, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8)
            batch_labels = np.asarray(batch["labels"], dtype=np.int64)
            data = data.reshape(-1, 3, 32, 32)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
            raise CorruptImageError(
                f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error}); "
                "delete it and download the dataset again with --download"
            ) from error
        if len(data) != len(batch_labels):
            raise CorruptImageError(
                f"{path} has {len(data)} images but {len(batch_labels)} labels; "
                "delete it and download the dataset again with --download"
            )
        images.append(torch.from_numpy(data.copy()))
        labels.append(torch.from_numpy(batch_labels))

    image_tensor = torch.cat(images)
    label_tensor = torch.cat(labels)
    if len(label_tensor) == 0:
        raise EmptySplitError(f"the {split} batches in {root} contain no images; download again")
    present = int(label_tensor.max()) + 1
    if int(label_tensor.min()) < 0 or present > num_classes:
        raise ClassCountError(
            f"{root} has labels from {int(label_tensor.min())} to {present - 1} in the {split} "
            f"split, but {num_classes} classes were expected; download the dataset again"
        )
    return image_tensor, label_tensor


def _class_folders(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        raise DatasetLayoutError(
            f"{split_dir} is missing: an ImageFolder copy of CIFAR-10 needs train/<class>/ "
            f"and test/<class>/ folders; {_FIX_HINT}"
        )
    return sorted(entry for entry in split_dir.iterdir() if entry.is_dir())


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(
        entry
        for entry in class_dir.iterdir()
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS
    )


def _decode_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL raises OSError for truncated files and UnidentifiedImageError for
        # bytes that are no image at all.
        raise CorruptImageError(
            f"cannot decode {path} ({error}); replace or delete the file, or use a fresh copy "
            "of the dataset"
        ) from error
    if pixels.shape != (32, 32, 3):
        raise CorruptImageError(
            f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, but CIFAR-10 images are "
            "32x32; replace the file or use a fresh copy of the dataset"
        )
    return pixels


def _read_imagefolder(
    root: Path, split: str, num_classes: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    split_dir = root / split
    classes = _class_folders(split_dir)
    if len(classes) != num_classes:
        noun = "class folder" if len(classes) == 1 else "class folders"
        raise ClassCountError(
            f"{split_dir} has {len(classes)} {noun} "
            f"({', '.join(c.name for c in classes) or 'none'}), but {num_classes} were expected; "
            "add the missing class folders or remove the extra ones"
        )
    other = root / ("test" if split == "train" else "train")
    if other.is_dir():
        other_names = [c.name for c in _class_folders(other)]
        if other_names != [c.name for c in classes]:
            raise ClassCountError(
                f"the class folders of {split_dir} and {other} differ; both splits need "
                "the same class names"
            )

    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(classes):
        class_files = _image_files(class_dir)
        if not class_files:
            raise EmptySplitError(
                f"{class_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add its images or use a fresh copy of the dataset"
            )
        files.extend(class_files)
        labels.extend([label] * len(class_files))

    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    bar = tqdm(files, desc=f"decode {split}", unit="img", disable=not progress, leave=False)
    for index, path in enumerate(bar):
        images[index] = _decode_image(path)
    image_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return image_tensor, torch.tensor(labels, dtype=torch.int64)


# -----------------------------------------------------------------------------
# On-disk cache


def default_cache_dir() -> Path:
    """Return ``$HW2LIB_CACHE_DIR``, or ``~/.cache/hw2lib`` when it is unset."""
    configured = os.environ.get("HW2LIB_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "hw2lib"


def _source_fingerprint(source: DataSource, split: str) -> list[object]:
    """List the mtimes and sizes that change when files of the split are replaced."""
    if source.variant == VARIANT_OFFICIAL:
        names = OFFICIAL_TRAIN_FILES if split == "train" else OFFICIAL_TEST_FILES
        fingerprint: list[object] = []
        for name in names:
            path = source.root / name
            # A missing batch is reported by _read_official with the fix.
            stat = path.stat() if path.exists() else None
            fingerprint.append([name, stat and stat.st_size, stat and stat.st_mtime_ns])
        return fingerprint
    # Adding, removing or renaming a file changes its folder's mtime.
    split_dir = source.root / split
    folders = [split_dir, *sorted(p for p in split_dir.iterdir() if p.is_dir())]
    return [[folder.name, folder.stat().st_mtime_ns] for folder in folders]


def cache_path(source: DataSource, split: str, cache_dir: Path) -> Path:
    """Return the cache file for one split of ``source``; the name hashes its absolute path."""
    key = hashlib.sha256(f"{source.root}|{source.variant}".encode()).hexdigest()[:16]
    return cache_dir / f"cifar10-{source.variant}-{key}-{split}.pt"


def _write_cache(path: Path, payload: dict[str, object]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    digest = hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file in the same folder, renamed into place, means a reader
    # sees either the old file or the complete new one.
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(CACHE_MAGIC)
            file.write(digest)
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> dict[str, object] | None:
    """Return the cached payload, or None when the file is missing, truncated or altered."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    header = len(CACHE_MAGIC) + _DIGEST_SIZE
    if len(blob) < header or not blob.startswith(CACHE_MAGIC):
        logger.warning("cache file %s has no valid header; rebuilding it", path)
        return None
    body = memoryview(blob)[header:]
    digest = hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()
    if digest != blob[len(CACHE_MAGIC) : header]:
        logger.warning("cache file %s fails its checksum; rebuilding it", path)
        return None
    return torch.load(io.BytesIO(body), weights_only=True)


# -----------------------------------------------------------------------------
# Public loading API


@dataclass
class Split:
    """One split of CIFAR-10 in memory."""

    images: torch.Tensor  # (N, 3, 32, 32) uint8
    labels: torch.Tensor  # (N,) int64
    source: DataSource
    split: str  # "train" or "test"
    from_cache: bool

    def __len__(self) -> int:
        return len(self.labels)

    def content_digest(self) -> str:
        """Return a BLAKE2b hex digest of the images and labels; it changes when either does."""
        digest = getattr(self, "_content_digest", None)
        if digest is None:
            hasher = hashlib.blake2b(digest_size=16)
            for tensor in (self.images, self.labels):
                array = tensor.contiguous().cpu().numpy()
                hasher.update(repr((array.dtype.str, array.shape)).encode())
                hasher.update(memoryview(array).cast("B"))
            digest = hasher.hexdigest()
            # Computed once, because hashing the 150 MB of CIFAR-10 training images
            # takes a fraction of a second and callers ask once per configuration
            # and seed. A split's tensors are not changed after loading.
            self._content_digest = digest
        return digest


def load_split(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    num_classes: int = 10,
    progress: bool = True,
) -> Split:
    """Load the ``"train"`` or ``"test"`` split of CIFAR-10 from ``data_dir``.

    The first call decodes the split and writes the cache; later calls read the
    cache, checking its digest, and rebuild it when the check fails or the source
    files changed.

    Raises:
        DatasetError: one of its subclasses, when the data is missing, has the
            wrong layout, contains an unreadable image, has the wrong number of
            classes or an empty split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    source = locate(data_dir, download=download)
    if source.variant == VARIANT_IMAGEFOLDER:
        _class_folders(source.root / split)  # a clear error when the split folder is missing
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_path(source, split, cache_root)
    fingerprint = _source_fingerprint(source, split)

    cached = _read_cache(path)
    if cached is not None:
        if (
            cached.get("format") == CACHE_FORMAT_VERSION
            and cached.get("fingerprint") == fingerprint
            and cached.get("num_classes") == num_classes
        ):
            logger.info(
                "loaded the %s split of %s (%s) from the cache %s",
                split,
                source.label,
                source.root,
                path,
            )
            return Split(cached["images"], cached["labels"], source, split, from_cache=True)
        logger.info("cache file %s is out of date; rebuilding it", path)

    logger.info("decoding the %s split of %s from %s", split, source.label, source.root)
    if source.variant == VARIANT_OFFICIAL:
        images, labels = _read_official(source.root, split, num_classes)
    else:
        images, labels = _read_imagefolder(source.root, split, num_classes, progress)
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "num_classes": num_classes,
        "images": images,
        "labels": labels,
    }
    _write_cache(path, payload)
    return Split(images, labels, source, split, from_cache=False)


def balanced_subset(labels: torch.Tensor, size: int | None, seed: int = 0) -> torch.Tensor:
    """Return sorted indices of ``size`` examples with (nearly) equal counts per class.

    ``None``, or a size at least the number of examples, selects every index.
    The choice depends only on ``labels``, ``size`` and ``seed``.
    """
    count = len(labels)
    if size is None or size >= count:
        return torch.arange(count)
    if size <= 0:
        raise ValueError(f"subset size must be positive, not {size}")
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    per_class = size // len(classes)
    extra = size - per_class * len(classes)
    chosen = []
    for position, label in enumerate(classes.tolist()):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        chosen.append(members[: per_class + (1 if position < extra else 0)])
    return torch.cat(chosen).sort().values


def synthetic_split(size: int, num_classes: int = 10, seed: int = 0, split: str = "train") -> Split:
    """Build a learnable stand-in for CIFAR-10 for smoke runs and tests.

    Each class is a fixed random colour pattern plus pixel noise, so a small
    network reaches high accuracy within a few epochs and a broken pipeline
    shows up as chance accuracy. The patterns are smooth (a 4 x 4 grid blown up
    to 32 x 32) and mirror-symmetric, so the training augmentation (shifts of up
    to 4 pixels and horizontal flips) keeps the classes apart.
    """
    generator = torch.Generator().manual_seed(1234)  # the same class patterns for every split
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    coarse = (coarse + coarse.flip(-1)) / 2
    patterns = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear") * 255
    generator = torch.Generator().manual_seed(seed + (0 if split == "train" else 10_000))
    labels = torch.arange(size) % num_classes
    labels = labels[torch.randperm(size, generator=generator)]
    noise = torch.randn(size, 3, 32, 32, generator=generator) * 40
    images = (patterns[labels] + noise).clamp(0, 255).to(torch.uint8)
    return Split(images, labels, DataSource(Path("synthetic"), VARIANT_SYNTHETIC), split, False)


# -----------------------------------------------------------------------------
# Batches on the device


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Convert uint8 images (B, 3, H, W) to ``dtype`` standardized by the CIFAR-10 statistics."""
    mean = torch.tensor(CIFAR10_MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR10_STD, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (images.to(dtype) - mean) / std


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4
) -> torch.Tensor:
    """Crop each image at a random offset after zero padding, and flip half of them.

    ``images`` is (B, C, H, W) of any dtype on any device. The offsets and flips
    are drawn on the CPU from ``generator``, so a seed gives the same batch on
    every device. Returns a tensor of the same shape, dtype and device.
    """
    batch, _, height, width = images.shape
    device = images.device
    shifts = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(device)

    padded = F.pad(images, (padding, padding, padding, padding))
    rows = shifts[0, :, None] + torch.arange(height, device=device)  # (B, H)
    cols = shifts[1, :, None] + torch.arange(width, device=device)  # (B, W)
    # Mirroring the column index flips the image inside the same gather.
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


class DeviceLoader:
    """Batches of one split that live on the training device.

    Each epoch draws its own generator from ``(seed, epoch)``, so the order and
    augmentation of epoch ``k`` do not depend on how many epochs ran before.
    A resumed run therefore gets the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        train: bool,
        seed: int = 0,
        drop_last: bool | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        # Training drops the last partial batch, because a tiny last batch gives
        # BatchNorm noisy statistics; evaluation keeps every example.
        self.drop_last = train if drop_last is None else drop_last

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.batch_size
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)``: uint8 (B, 3, 32, 32) and int64 (B,) on the device."""
        count = len(self.labels)
        if self.train:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(count, generator=generator).to(self.device)
        else:
            generator = None
            order = torch.arange(count, device=self.device)
        for batch in range(len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            images = self.images[index]
            if generator is not None:
                images = random_crop_flip(images, generator)
            yield images, self.labels[index]

    __iter__ = epoch
