"""The dataset registry: each dataset's files, their published checksums and its mirrors.

A dataset is four IDX files (``FILES``); each is verified by the md5 of its published ``.gz``
or of its decompressed bytes, so copies recompressed by someone else (Debian's package, the
offline copy of MNIST's training images) are accepted. ``cnn_common.data`` finds them,
``cnn_common.idx`` verifies and reads them, ``cnn_common.download`` fetches them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnn_common.errors import DataError

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its files, their checksums and where to download them."""

    name: str
    class_names: tuple[str, ...]
    gz_md5: dict[str, str]  # file stem -> md5 of the published .gz
    raw_md5: dict[str, str]  # file stem -> md5 of the decompressed IDX bytes
    mirrors: tuple[str, ...]
    torchvision_dir: str  # torchvision's folder name: <root>/<torchvision_dir>/raw
    keras_npz: tuple[str, str] | None = None  # (file name, sha256) under ~/.keras/datasets


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(i) for i in range(10)),
        gz_md5={
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        raw_md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        torchvision_dir="MNIST",
        keras_npz=("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        gz_md5={
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        raw_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        torchvision_dir="FashionMNIST",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; an unknown name raises ``DataError`` listing the known."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}", f"choose one of: {', '.join(DATASETS)}"
        ) from None
