"""Datasets: where the files are looked for, the split, and the ``Data`` every trainer receives.

``load_dataset(name)`` looks, in order, in:

1. ``root`` (``--data-dir``), then ``$CNN_DATA_DIR``, then the cache
   (``$CNN_CACHE_DIR`` or ``~/.cache/cnn-rosetta``) — each as ``<dir>/<name>/<file>``;
2. layouts other tools leave behind: torchvision's ``<dir>/MNIST/raw`` (or ``FashionMNIST/raw``)
   under the same folders, and Keras's ``~/.keras/datasets/mnist.npz``;
3. Debian's ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist``);
4. the standard mirrors (with pooch: temporary file, checksum, rename into the cache).

Every file found is verified: its ``.gz`` md5 as published, or the md5 of its decompressed
bytes (so a recompressed copy is accepted), and its IDX header against its length.

Images come back ``uint8 (N, H, W, C)``, labels ``int64 (N,)``. The registry of datasets is
``cnn_common.datasets``, the reading of one file ``cnn_common.idx``, the download
``cnn_common.download``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_common.datasets import FILES, DatasetInfo, dataset_info
from cnn_common.download import cache_dir, download_files, mirror_urls
from cnn_common.errors import DataError, UserError
from cnn_common.idx import check_contents, read_idx
from cnn_common.seeds import generator
from cnn_common.spec import TrainSpec

DEBIAN_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class RawDataset:
    """A dataset as stored: uint8 images ``(N, H, W, C)``, int64 labels ``(N,)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where the files were found


@dataclass(frozen=True)
class Data:
    """What every trainer receives: float images in [0, 1] ``(N, H, W, C)``, int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ----------------------------------------------------------------------------- finding the files


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


# Files parsed in this process, by their paths, sizes and modification times: a warm worker
# (``compare.engine.pool``) that reads the dataset for every job parses and verifies it once,
# and a file that changed is read again. Their arrays are read-only: every caller copies.
_PARSED: dict[tuple[object, ...], dict[str, np.ndarray]] = {}
_PARSED_KEPT = 2  # datasets kept at once (MNIST's files are about 55 MB)


def _from_folder(folder: Path, info: DatasetInfo) -> dict[str, np.ndarray] | None:
    paths = {stem: _find_file(folder, stem) for stem in FILES}
    if not all(paths.values()):
        return None
    stats = [(path, path.stat()) for path in paths.values() if path is not None]
    key = (info.name, *((str(p), st.st_size, st.st_mtime_ns) for p, st in stats))
    if key in _PARSED:
        return _PARSED[key]
    arrays = _parse_folder(paths, info)
    for array in arrays.values():
        array.setflags(write=False)
    while len(_PARSED) >= _PARSED_KEPT:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[key] = arrays
    return arrays


def _parse_folder(paths: dict[str, Path | None], info: DatasetInfo) -> dict[str, np.ndarray]:
    read = {stem: read_idx(path, stem, info) for stem, path in paths.items() if path is not None}
    arrays = {stem: array for stem, (array, _) in read.items()}
    check_contents(arrays, info, {stem: str(path) for stem, path in paths.items()})
    for stem, (_, verified) in read.items():
        if not verified:
            raise DataError(
                f"{paths[stem]} fails its checksum (md5 of neither the published .gz nor the "
                f"{info.name} contents {info.raw_md5[stem]})",
                f"delete {paths[stem]} and fetch the official {info.name} file again",
            )
    return arrays


def _missing_note(folder: Path) -> str:
    """``": missing <files>"`` for a folder holding some but not all of the four files, else ""."""
    missing = [stem for stem in FILES if _find_file(folder, stem) is None]
    if not missing or len(missing) == len(FILES):
        return ""
    return ": missing " + ", ".join(f"{stem}[.gz]" for stem in missing)


def _from_keras_npz(path: Path, info: DatasetInfo) -> dict[str, np.ndarray] | None:
    if info.keras_npz is None or not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != info.keras_npz[1]:
        raise DataError(
            f"{path} fails its sha256 checksum",
            f"delete {path} and let keras or this loader fetch it again",
        )
    with np.load(path) as npz:
        return {
            FILES[0]: npz["x_train"],
            FILES[1]: npz["y_train"],
            FILES[2]: npz["x_test"],
            FILES[3]: npz["y_test"],
        }


def _candidate_folders(info: DatasetInfo, root: str | Path | None) -> list[tuple[str, Path]]:
    bases: list[tuple[str, Path]] = []
    if root is not None:
        bases.append(("--data-dir", Path(root)))
    if os.environ.get("CNN_DATA_DIR"):
        bases.append(("$CNN_DATA_DIR", Path(os.environ["CNN_DATA_DIR"])))
    bases.append(("cache", cache_dir()))
    folders = [(label, base / info.name) for label, base in bases]
    folders += [
        (f"{label} (torchvision layout)", base / info.torchvision_dir / "raw")
        for label, base in bases
    ]
    folders.append(("Debian dataset package", DEBIAN_DIR / info.name))
    return folders


def load_dataset(
    name: str = "mnist",
    root: str | Path | None = None,
    download: bool = True,
    mirrors: tuple[str, ...] | None = None,
) -> RawDataset:
    """Find (or download) and parse dataset ``name``; see the module docstring for the order.

    Args:
        name: a key of ``DATASETS`` (``mnist``, ``fashion-mnist``).
        root: an explicit folder holding ``<name>/<file>.gz`` (``--data-dir``).
        download: fetch from the mirrors when no local copy is found.
        mirrors: base URLs to download from instead of the registry's (``$CNN_DATA_MIRRORS``,
            comma-separated, also overrides them).
    """
    info = dataset_info(name)
    if root is not None and not Path(root).is_dir():
        state = "is not a folder" if Path(root).exists() else "does not exist"
        raise DataError(
            f"--data-dir {root} {state}",
            f"give --data-dir the folder that holds {name}/ (or leave it out to look in "
            "$CNN_DATA_DIR and the cache)",
        )
    looked: list[str] = []
    arrays = None
    source = ""
    for label, folder in _candidate_folders(info, root):
        arrays = _from_folder(folder, info)
        if arrays is not None:
            source = str(folder)
            break
        looked.append(f"{folder} ({label}){_missing_note(folder)}")
    if arrays is None and info.keras_npz is not None:
        npz = Path.home() / ".keras" / "datasets" / info.keras_npz[0]
        looked.append(f"{npz} (Keras cache)")
        arrays = _from_keras_npz(npz, info)
        source = str(npz)
    if arrays is None and download:
        urls = mirror_urls(info, mirrors)
        folder, failures = download_files(info, urls)
        arrays = _from_folder(folder, info)
        source = str(folder)
        if arrays is None:
            looked.append("download: " + "; ".join(failures[-len(urls) :] or ["failed"]))
    if arrays is None:
        places = "\n    ".join(looked)
        raise DataError(
            f"dataset {name!r} not found; looked in:\n    {places}",
            f"put the four files ({', '.join(f + '.gz' for f in FILES)}) in DIR/{name}/ and "
            f"pass --data-dir DIR or set CNN_DATA_DIR=DIR"
            + ("" if download else ", or allow the download"),
        )
    x_train, y_train = arrays[FILES[0]], arrays[FILES[1]]
    x_test, y_test = arrays[FILES[2]], arrays[FILES[3]]
    return RawDataset(
        name=name,
        x_train=x_train.reshape(*x_train.shape[:3], 1),  # (N, H, W) -> (N, H, W, 1)
        y_train=y_train.astype(np.int64),
        x_test=x_test.reshape(*x_test.shape[:3], 1),
        y_test=y_test.astype(np.int64),
        class_names=info.class_names,
        source=source,
    )


# ----------------------------------------------------------------------------- split, scale


def scale_images(x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 ``(N, H, W, C)`` -> floats in [0, 1], same shape."""
    return (x.astype(dtype) / np.asarray(255.0, dtype=dtype)).astype(dtype, copy=False)


def train_val_split(n: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a deterministic split of ``n`` items by ``seed``.

    The validation indices are a seeded random subset; both index arrays are sorted so the
    training set keeps the file's order (the batch order shuffles it each epoch).
    """
    if not 0 <= validation_size < n:
        raise DataError(
            f"validation_size {validation_size} must be below the {n} training images",
            "lower validation_size in the train spec",
        )
    rng = generator(seed, "split")
    perm = rng.permutation(n)
    return np.sort(perm[validation_size:]), np.sort(perm[:validation_size])


def prepare_data(
    name: str = "mnist",
    validation_size: int = 5000,
    seed: int = 0,
    root: str | Path | None = None,
    dtype: str = "float32",
    download: bool = True,
) -> Data:
    """Load, split and scale a dataset: the one entry point every trainer and test uses."""
    raw = load_dataset(name, root=root, download=download)
    train_idx, val_idx = train_val_split(len(raw.y_train), validation_size, seed)
    return Data(
        name=name,
        x_train=scale_images(raw.x_train[train_idx], dtype),
        y_train=raw.y_train[train_idx],
        x_val=scale_images(raw.x_train[val_idx], dtype),
        y_val=raw.y_train[val_idx],
        x_test=scale_images(raw.x_test, dtype),
        y_test=raw.y_test,
        class_names=raw.class_names,
    )


def training_data(
    name: str,
    train_spec: TrainSpec,
    root: str | Path | None = None,
    subset_size: int | None = None,
    download: bool = True,
    eval_size: int | None = None,
) -> Data:
    """The data a training run of ``train_spec`` uses: ``prepare_data`` with its split seed,
    validation size and dtype.

    ``subset_size`` keeps only the first N training images; the validation and test sets stay
    whole unless ``eval_size`` cuts each of them to its first N images as well.
    """
    if subset_size is not None:
        check_image_count("--subset", subset_size)
    if eval_size is not None:
        check_image_count("--eval-subset", eval_size)
    data = prepare_data(
        name,
        validation_size=train_spec.validation_size,
        seed=train_spec.seed,
        root=root,
        dtype=train_spec.dtype,
        download=download,
    )
    if subset_size is not None and subset_size > len(data.x_train):
        raise DataError(
            f"--subset {subset_size} asks for more than the {len(data.x_train):,} training "
            f"images of {name} (after holding out {train_spec.validation_size:,} for validation)",
            f"use --subset {len(data.x_train)} or less, or leave it out for all of them",
        )
    return subset(data, subset_size, eval_size, eval_size)


def split_sizes(
    name: str,
    train_spec: TrainSpec,
    root: str | Path | None = None,
    subset_size: int | None = None,
    eval_size: int | None = None,
) -> tuple[int, int, int]:
    """The training, validation and test image counts ``training_data`` gives for the same
    arguments, without preparing (scaling, splitting) any image."""
    raw = load_dataset(name, root=root)
    n_train = len(raw.y_train) - train_spec.validation_size
    return (
        len(range(n_train)[:subset_size]),
        len(range(train_spec.validation_size)[:eval_size]),
        len(range(len(raw.y_test))[:eval_size]),
    )


def load_test_set(
    name: str,
    dtype: str = "float32",
    root: str | Path | None = None,
    eval_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The test set a run of ``training_data(..., eval_size=eval_size)`` evaluates on, without
    preparing its training and validation sets: ``(x (N, H, W, C) in [0, 1], y (N,))``."""
    raw = load_dataset(name, root=root)
    x, y = raw.x_test[:eval_size], raw.y_test[:eval_size]
    return scale_images(x, dtype), y.astype(np.int64)


def check_image_count(flag: str, value: int) -> None:
    """Raise ``UserError`` unless ``value`` (given with ``flag``) is a positive image count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(
            f"{flag} must be a positive number of images, got {value!r}",
            f"use {flag} N with N >= 1, or leave it out for all images",
        )


def subset(
    data: Data, n_train: int | None, n_val: int | None = None, n_test: int | None = None
) -> Data:
    """The first items of each split (None keeps a split whole): quick runs and tests."""
    return Data(
        data.name,
        data.x_train[:n_train],
        data.y_train[:n_train],
        data.x_val[:n_val],
        data.y_val[:n_val],
        data.x_test[:n_test],
        data.y_test[:n_test],
        data.class_names,
    )


def check_images(x: object, input_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``x`` as a float array ``(N, H, W, C)`` matching ``input_shape``, or raise.

    Raises ``ImageError`` (a ``ValueError``) naming the expected and received shape/dtype.
    """
    from cnn_common.errors import ImageError

    arr = np.asarray(x)
    expected = f"(N, {', '.join(str(d) for d in input_shape)})"
    if arr.ndim == len(input_shape) and tuple(arr.shape) == tuple(input_shape):
        raise ImageError(
            f"expected a batch of images of shape {expected}, received a single "
            f"image of shape {arr.shape}",
            "add a batch axis: x[None]",
        )
    if arr.ndim != len(input_shape) + 1 or tuple(arr.shape[1:]) != tuple(input_shape):
        raise ImageError(
            f"expected images of shape {expected} (NHWC), received {arr.shape}",
            "reshape or resize the images to the spec's input_shape",
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageError(
            f"expected float images scaled to [0, 1], received dtype {arr.dtype}",
            "scale with cnn_common.data.scale_images(x) (x / 255 as float32)",
        )
    return arr
