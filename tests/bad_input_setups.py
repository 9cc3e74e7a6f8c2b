"""The setups of ``tests/test_bad_input.py``'s cases: each takes ``(tmp, out, data)``, a scratch
folder, the ``--out`` folder (already holding files) and the real data folder
(``$CNN_DATA_DIR``, None for a case that does not need it), and lays out what the case's
command will meet: a damaged file, a finished run, weights of another spec, no data at all."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnn_common.spec import ConvBlock, ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import init_weights, save_weights
from compare.run.command import RunOptions

BIN = Path(sys.executable).parent
MODULES = {
    "numpy-cnn": "numpy_cnn",
    "keras-cnn": "keras_cnn",
    "lightning-cnn": "lightning_cnn",
    "pytorch-cnn": "pytorch_cnn",
    "cnn-compare": "compare",
}
# Arguments that keep a command that wrongly goes on short.
SMALL = ["--subset", "100", "--epochs", "1", "--eval-subset", "50"]


def entry_point(name: str) -> list[str]:
    """The installed console script, or ``python -m`` its module when it is not installed."""
    script = BIN / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", MODULES[name]]


Setup = Callable[[Path, Path, "Path | None"], None]


def write(name: str, content: str | bytes) -> Setup:
    def setup(tmp: Path, out: Path, data: Path | None) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def in_out(name: str, content: str) -> Setup:
    def setup(tmp: Path, out: Path, data: Path | None) -> None:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(content)

    return setup


def copy_mnist(tmp: Path, data: Path | None) -> Path:
    """A writable copy of the real MNIST files: ``tmp/data/mnist/*.gz``."""
    assert data is not None
    folder = tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    for source in (data / "mnist").glob("*.gz"):
        shutil.copyfile(source, folder / source.name)
    return folder


def damaged(stem: str, damage: Callable[[bytes], bytes]) -> Setup:
    """MNIST copied into ``tmp/data`` with one file's decompressed bytes damaged."""

    def setup(tmp: Path, out: Path, data: Path | None) -> None:
        path = copy_mnist(tmp, data) / f"{stem}.gz"
        path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))

    return setup


def truncated_gz(tmp: Path, out: Path, data: Path | None) -> None:
    path = copy_mnist(tmp, data) / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])


def garbage_gz(tmp: Path, out: Path, data: Path | None) -> None:
    (copy_mnist(tmp, data) / "t10k-labels-idx1-ubyte.gz").write_text("not a gzip file\n")


def fewer_labels(raw: bytes) -> bytes:
    """An IDX label file of 10 labels fewer, its header saying so: a valid file of another
    count than its images."""
    count = int.from_bytes(raw[4:8], "big") - 10
    return raw[:4] + count.to_bytes(4, "big") + raw[8:-10]


def label_out_of_range(raw: bytes) -> bytes:
    changed = bytearray(raw)
    changed[8 + 5] = 12  # the sixth label: MNIST has classes 0 to 9
    return bytes(changed)


def one_pixel(raw: bytes) -> bytes:
    changed = bytearray(raw)
    changed[-1] ^= 0x01  # still a valid IDX file: only its content (and checksum) changed
    return bytes(changed)


def no_data_anywhere(tmp: Path, out: Path, data: Path | None) -> None:
    for name in ("empty", "cache", "home"):
        (tmp / name).mkdir()


NO_DATA_ENV = {
    "CNN_DATA_DIR": "{tmp}/empty",
    "CNN_CACHE_DIR": "{tmp}/cache",
    "HOME": "{tmp}/home",
    "CNN_DATA_MIRRORS": "http://127.0.0.1:9/",  # nothing listens there: the download fails
}


def finished_run(tmp: Path, out: Path, data: Path | None) -> None:
    (out / "run.json").write_text("{}\n")


def compare_results(tmp: Path, out: Path, data: Path | None) -> None:
    """A results folder of `cnn-compare run`: its configuration and one finished run."""
    options = RunOptions(
        frameworks=("numpy",),
        dataset="mnist",
        model_spec=ModelSpec(),
        train_spec=TrainSpec(epochs=1),
        subset=100,
        eval_subset=50,
        out=out,
    )
    (out / "config.json").write_text(json.dumps(options.config()))
    (out / "runs" / "numpy-seed0").mkdir(parents=True)
    (out / "runs" / "numpy-seed0" / "run.json").write_text("{}\n")


def numpy_run(tmp: Path, out: Path, data: Path | None) -> None:
    """A real (tiny) finished NumPy run in ``out``, with its checkpoint."""
    command = [*entry_point("numpy-cnn"), "train", *SMALL, "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def weights_file(tmp: Path, out: Path, data: Path | None) -> None:
    spec = ModelSpec()
    save_weights(tmp / "good.safetensors", init_weights(spec, 0), spec)


def truncated_weights(tmp: Path, out: Path, data: Path | None) -> None:
    weights_file(tmp, out, data)
    raw = (tmp / "good.safetensors").read_bytes()
    (tmp / "w.safetensors").write_bytes(raw[: len(raw) // 2])


def weights_of_another_spec(tmp: Path, out: Path, data: Path | None) -> None:
    """The seed model's tensors under the spec of a model with 8 first filters."""
    from safetensors.numpy import save

    other = ModelSpec(conv=(ConvBlock(filters=8), ConvBlock(filters=32)))
    metadata = {"spec": json.dumps(spec_to_dict(other))}
    tensors = {k: np.ascontiguousarray(v) for k, v in init_weights(ModelSpec(), 0).items()}
    (tmp / "w.safetensors").write_bytes(save(tensors, metadata=metadata))
