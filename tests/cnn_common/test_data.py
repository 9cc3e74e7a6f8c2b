"""cnn_common.data: where the files are looked for (the real files, other tools' layouts, the
registry), the split and scaling, ``training_data``."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnn_common import data as data_mod
from cnn_common import datasets as datasets_mod
from cnn_common.data import (
    Data,
    RawDataset,
    check_image_count,
    check_images,
    load_dataset,
    load_test_set,
    prepare_data,
    scale_images,
    subset,
    train_val_split,
    training_data,
)
from cnn_common.datasets import FILES
from cnn_common.errors import DataError, ImageError, UserError
from cnn_common.spec import TrainSpec
from tests.cnn_common.conftest import MNIST_TRAIN_COUNTS, files_under

# ----------------------------------------------------------------------------- the real data


def test_mnist_sizes_dtypes_and_label_counts(raw_mnist: RawDataset, data_dir: Path) -> None:
    assert raw_mnist.x_train.shape == (60_000, 28, 28, 1)
    assert raw_mnist.x_test.shape == (10_000, 28, 28, 1)
    assert raw_mnist.x_train.dtype == np.uint8 and raw_mnist.x_test.dtype == np.uint8
    assert raw_mnist.y_train.shape == (60_000,) and raw_mnist.y_test.shape == (10_000,)
    assert raw_mnist.y_train.dtype == np.int64 and raw_mnist.y_test.dtype == np.int64
    assert np.bincount(raw_mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(raw_mnist.y_test, minlength=10).sum() == 10_000
    assert raw_mnist.x_train.max() == 255 and raw_mnist.x_train.min() == 0
    assert raw_mnist.class_names == tuple("0123456789")
    assert Path(raw_mnist.source) == data_dir / "mnist"


def test_fashion_mnist_has_6000_per_class(data_dir: Path) -> None:
    raw = load_dataset("fashion-mnist", root=data_dir, download=False)
    assert raw.x_train.shape == (60_000, 28, 28, 1) and raw.x_test.shape == (10_000, 28, 28, 1)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
    assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"


def test_prepared_mnist_split_and_scaling(mnist: Data, raw_mnist: RawDataset) -> None:
    assert (len(mnist.x_train), len(mnist.x_val), len(mnist.x_test)) == (55_000, 5_000, 10_000)
    assert mnist.x_train.shape[1:] == (28, 28, 1)
    for x in (mnist.x_train, mnist.x_val, mnist.x_test):
        assert x.dtype == np.float32
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for y in (mnist.y_train, mnist.y_val, mnist.y_test):
        assert y.dtype == np.int64
    train_idx, val_idx = train_val_split(60_000, 5_000, 0)  # the fixture's seed
    np.testing.assert_array_equal(mnist.y_val, raw_mnist.y_train[val_idx])
    np.testing.assert_array_equal(mnist.y_train, raw_mnist.y_train[train_idx])
    np.testing.assert_array_equal(mnist.x_val, raw_mnist.x_train[val_idx] / np.float32(255))
    assert mnist.num_classes == 10


def test_split_is_deterministic_disjoint_and_complete() -> None:
    train, val = train_val_split(60_000, 5_000, seed=3)
    again_train, again_val = train_val_split(60_000, 5_000, seed=3)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert (len(train), len(val)) == (55_000, 5_000)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(60_000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted: file order kept
    _, other_val = train_val_split(60_000, 5_000, seed=4)
    assert not np.array_equal(val, other_val)
    # a random subset, not a block at either end
    assert val.min() < 1_000 and val.max() > 59_000
    # drawn from the "split" seed stream (tag 0x5EED) of the seed: a change must be deliberate
    perm = np.random.default_rng(np.random.SeedSequence([3, 0x5EED, 0])).permutation(60_000)
    np.testing.assert_array_equal(val, np.sort(perm[:5_000]))


def test_split_sizes_out_of_range() -> None:
    train, val = train_val_split(10, 0, seed=0)
    assert val.size == 0 and train.tolist() == list(range(10))
    with pytest.raises(DataError, match="validation_size 10 must be below the 10"):
        train_val_split(10, 10, seed=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scale_images_to_unit_interval(dtype: str) -> None:
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    scaled = scale_images(x, dtype)
    assert scaled.dtype == np.dtype(dtype) and scaled.shape == x.shape
    expected = np.arange(256, dtype=np.float64).reshape(1, 16, 16, 1) / 255.0
    np.testing.assert_allclose(scaled, expected, rtol=np.finfo(dtype).eps, atol=0)
    assert scaled[0, 0, 0, 0] == 0.0 and scaled[0, -1, -1, 0] == 1.0


def test_prepare_data_float64_and_subset(data_dir: Path, isolated: Path) -> None:
    data = prepare_data("mnist", validation_size=1000, seed=1, root=data_dir, dtype="float64")
    assert data.x_train.dtype == np.float64 and len(data.x_val) == 1000
    small = subset(data, 300)  # None keeps a split whole
    assert (len(small.x_train), len(small.x_val), len(small.x_test)) == (300, 1000, 10_000)
    assert len(small.y_train) == 300 and small.class_names == data.class_names
    np.testing.assert_array_equal(small.x_train, data.x_train[:300])
    np.testing.assert_array_equal(small.y_val, data.y_val)
    cut = subset(data, 300, 30, 60)
    assert (len(cut.x_train), len(cut.x_val), len(cut.x_test)) == (300, 30, 60)
    assert (len(cut.y_train), len(cut.y_val), len(cut.y_test)) == (300, 30, 60)
    np.testing.assert_array_equal(cut.x_test, data.x_test[:60])
    np.testing.assert_array_equal(cut.y_val, data.y_val[:30])
    whole = subset(data, None)
    assert len(whole.x_train) == len(data.x_train) == 59_000


def test_training_data_cuts_the_training_images_only(data_dir: Path, isolated: Path) -> None:
    spec = TrainSpec(validation_size=2000, seed=4)
    full = prepare_data("mnist", validation_size=2000, seed=4, root=data_dir)
    data = training_data("mnist", spec, root=data_dir, subset_size=500)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (500, 2000, 10_000)
    np.testing.assert_array_equal(data.y_train, full.y_train[:500])
    np.testing.assert_array_equal(data.x_val, full.x_val)  # the seed's split, whole
    evaluated = training_data("mnist", spec, root=data_dir, subset_size=500, eval_size=300)
    assert (len(evaluated.x_val), len(evaluated.x_test)) == (300, 300)
    np.testing.assert_array_equal(evaluated.y_test, full.y_test[:300])
    f64 = training_data("mnist", TrainSpec(dtype="float64"), root=data_dir, subset_size=10)
    assert f64.x_train.dtype == np.float64 and len(f64.x_val) == 5000


@pytest.mark.parametrize(("eval_size", "dtype"), [(None, "float32"), (300, "float64")])
def test_the_test_set_alone_is_the_one_training_data_evaluates_on(
    data_dir: Path, isolated: Path, eval_size: int | None, dtype: str
) -> None:
    spec = TrainSpec(dtype=dtype, seed=3)
    data = training_data("mnist", spec, root=data_dir, subset_size=10, eval_size=eval_size)
    x, y = load_test_set("mnist", dtype, root=data_dir, eval_size=eval_size)
    assert x.dtype == data.x_test.dtype and y.dtype == data.y_test.dtype == np.int64
    np.testing.assert_array_equal(x, data.x_test)
    np.testing.assert_array_equal(y, data.y_test)


def test_parsed_files_are_kept_read_only_and_read_again_when_they_change(
    mnist_copy: Path, isolated: Path
) -> None:
    first = load_dataset("mnist", root=mnist_copy, download=False)
    again = load_dataset("mnist", root=mnist_copy, download=False)
    assert np.shares_memory(first.x_test, again.x_test)  # parsed once
    assert not first.x_test.flags.writeable
    labels = mnist_copy / "mnist" / f"{FILES[3]}.gz"
    labels.write_bytes(labels.read_bytes()[:-100])  # truncated: a changed file
    with pytest.raises(DataError):
        load_dataset("mnist", root=mnist_copy, download=False)


def test_training_data_refuses_a_subset_larger_than_the_training_set(
    data_dir: Path, isolated: Path
) -> None:
    with pytest.raises(DataError) as info:
        training_data("mnist", TrainSpec(), root=data_dir, subset_size=55_001)
    assert "--subset 55001" in info.value.message and "55,000 training" in info.value.message
    assert "5,000 for validation" in info.value.message
    assert "--subset 55000" in info.value.hint


@pytest.mark.parametrize("value", [0, -3, True, 2.5])
def test_image_counts_must_be_positive_integers(value: object) -> None:
    with pytest.raises(UserError) as info:
        check_image_count("--eval-subset", value)  # type: ignore[arg-type]
    assert info.value.message == (
        f"--eval-subset must be a positive number of images, got {value!r}"
    )
    assert "--eval-subset N" in info.value.hint
    check_image_count("--eval-subset", 1)


def test_training_data_checks_the_counts_before_reading_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(data_mod, "prepare_data", no_reading)
    with pytest.raises(UserError, match="--subset must be a positive number of images, got 0"):
        training_data("mnist", TrainSpec(), subset_size=0)
    with pytest.raises(UserError, match="--eval-subset must be .* got -1"):
        training_data("mnist", TrainSpec(), subset_size=5, eval_size=-1)


def test_check_images() -> None:
    good = np.zeros((3, 28, 28, 1), dtype=np.float32)
    assert check_images(good, (28, 28, 1)) is good
    with pytest.raises(ImageError, match=r"(?s)single image.*x\[None\]"):
        check_images(good[0], (28, 28, 1))
    with pytest.raises(ImageError, match=r"(?s)\(N, 28, 28, 1\).*\(3, 1, 28, 28\)"):
        check_images(good.transpose(0, 3, 1, 2), (28, 28, 1))
    with pytest.raises(ValueError, match="dtype uint8"):
        check_images(good.astype(np.uint8), (28, 28, 1))


def test_unknown_dataset_lists_the_known() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", download=False)
    assert "'cifar10'" in info.value.message
    assert "mnist" in info.value.hint and "fashion-mnist" in info.value.hint


# ------------------------------------------------------------------ missing and corrupt copies


def test_missing_file_offline_lists_where_it_looked(mnist_copy: Path, isolated: Path) -> None:
    (mnist_copy / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=mnist_copy, download=False)
    err = info.value
    assert "dataset 'mnist' not found; looked in:" in err.message
    assert f"{mnist_copy / 'mnist'} (--data-dir): missing t10k-labels-idx1-ubyte" in err.message
    for place in (
        isolated / "cache" / "mnist",
        mnist_copy / "MNIST" / "raw",
        isolated / "debian" / "mnist",
        isolated / "home" / ".keras" / "datasets" / "mnist.npz",
    ):
        assert str(place) in err.message
    assert "t10k-labels-idx1-ubyte.gz" in err.hint
    assert "--data-dir" in err.hint and "CNN_DATA_DIR" in err.hint
    assert "allow the download" in err.hint
    assert files_under(isolated / "cache") == []  # offline: nothing fetched, nothing written


def test_keras_npz_is_found(
    isolated: Path, raw_mnist: RawDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keras's file holds (N, 28, 28) uint8 images and uint8 labels. The official file cannot be
    # made here, so the registry trusts the sha256 of one written from the real arrays.
    npz = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    np.savez(
        npz,
        x_train=raw_mnist.x_train[..., 0],
        y_train=raw_mnist.y_train.astype(np.uint8),
        x_test=raw_mnist.x_test[..., 0],
        y_test=raw_mnist.y_test.astype(np.uint8),
    )
    info = datasets_mod.DATASETS["mnist"]
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    patched = dataclasses.replace(info, keras_npz=("mnist.npz", digest))
    monkeypatch.setitem(datasets_mod.DATASETS, "mnist", patched)
    raw = load_dataset("mnist", download=False)
    assert Path(raw.source) == npz
    assert raw.x_train.shape == (60_000, 28, 28, 1) and raw.x_train.dtype == np.uint8
    assert raw.y_train.dtype == np.int64
    np.testing.assert_array_equal(raw.x_test, raw_mnist.x_test)
    np.testing.assert_array_equal(raw.y_train, raw_mnist.y_train)


def test_corrupt_keras_npz_is_named(isolated: Path) -> None:
    npz = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", download=False)
    assert f"{npz} fails its sha256 checksum" in info.value.message


# ----------------------------------------------------------------------------- other layouts


def test_uncompressed_files_are_found(mnist_copy: Path, raw_mnist: RawDataset) -> None:
    for stem in FILES:
        gz = mnist_copy / "mnist" / f"{stem}.gz"
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    raw = load_dataset("mnist", root=mnist_copy, download=False)
    np.testing.assert_array_equal(raw.x_train, raw_mnist.x_train)
    np.testing.assert_array_equal(raw.y_test, raw_mnist.y_test)


@pytest.mark.parametrize("where", ["root", "env", "cache"])
def test_torchvision_layout_is_found(
    isolated: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    base = isolated / "cache" if where == "cache" else isolated / "tv"
    raw_dir = base / "MNIST" / "raw"  # torchvision keeps the .gz and the extracted files here
    raw_dir.mkdir(parents=True)
    for stem in FILES:
        (raw_dir / stem).write_bytes(
            gzip.decompress((data_dir / "mnist" / f"{stem}.gz").read_bytes())
        )
    if where == "env":
        monkeypatch.setenv("CNN_DATA_DIR", str(base))
    raw = load_dataset("mnist", root=base if where == "root" else None, download=False)
    assert Path(raw.source) == raw_dir
    assert np.bincount(raw.y_train).tolist() == MNIST_TRAIN_COUNTS


def test_debian_layout_is_found(isolated: Path, data_dir: Path) -> None:
    shutil.copytree(data_dir / "fashion-mnist", isolated / "debian" / "fashion-mnist")
    raw = load_dataset("fashion-mnist", download=False)
    assert Path(raw.source) == isolated / "debian" / "fashion-mnist"
    assert len(raw.y_test) == 10_000


def test_env_data_dir_comes_before_the_cache(
    isolated: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "cache" / "mnist").mkdir(parents=True)
    (isolated / "cache" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    assert Path(load_dataset("mnist", download=False).source) == data_dir / "mnist"


@pytest.mark.parametrize(("subset_size", "eval_size"), [(None, None), (700, None), (300, 50)])
def test_split_sizes_are_those_training_data_gives(
    data_dir: Path, subset_size: int | None, eval_size: int | None
) -> None:
    spec = TrainSpec(validation_size=1000)
    data = data_mod.training_data("mnist", spec, data_dir, subset_size, eval_size=eval_size)
    sizes = data_mod.split_sizes("mnist", spec, data_dir, subset_size, eval_size)
    assert sizes == (len(data.x_train), len(data.x_val), len(data.x_test))
