"""cnn_common.download: the checksum-verified download, against a local HTTP server on
loopback; a failed or corrupt download leaves nothing in the cache."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnn_common import datasets as datasets_mod
from cnn_common.data import RawDataset, load_dataset
from cnn_common.datasets import FILES
from cnn_common.errors import DataError
from tests.cnn_common.conftest import files_under, md5


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records the paths asked for instead of logging them."""

    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        return

    def do_GET(self) -> None:  # noqa: N802 - base class name
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def mirror(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP mirror on 127.0.0.1: ``(base_url, served_folder, requested_paths)``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    served = isolated / "www"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def served_mnist(
    mirror: tuple[str, Path, list[str]], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path, list[str]]:
    """The mirror serving the four MNIST .gz files, with the registry trusting them.

    Three of the offline files are the published ``.gz`` bytes and are checked against the
    published md5 unchanged. The training images were recompressed (same contents, other gzip
    bytes), so for that one file the registry's ``.gz`` md5 is replaced by the md5 of the bytes
    served — after checking that they decompress to the official contents.
    """
    url, served, requests = mirror
    info = datasets_mod.DATASETS["mnist"]
    for stem in FILES:
        shutil.copyfile(data_dir / "mnist" / f"{stem}.gz", served / f"{stem}.gz")
    recompressed = "train-images-idx3-ubyte"
    for stem in FILES:
        gz = (served / f"{stem}.gz").read_bytes()
        if stem == recompressed:
            assert md5(gz) != info.gz_md5[stem]
            assert md5(gzip.decompress(gz)) == info.raw_md5[stem]
        else:
            assert md5(gz) == info.gz_md5[stem]
    gz_md5 = {**info.gz_md5, recompressed: md5((served / f"{recompressed}.gz").read_bytes())}
    monkeypatch.setitem(datasets_mod.DATASETS, "mnist", dataclasses.replace(info, gz_md5=gz_md5))
    return url, served, requests


def test_download_lands_in_the_cache_and_loads(
    served_mnist: tuple[str, Path, list[str]], isolated: Path, raw_mnist: RawDataset
) -> None:
    url, served, requests = served_mnist
    raw = load_dataset("mnist", mirrors=(url,))
    cache = isolated / "cache" / "mnist"
    assert Path(raw.source) == cache
    assert files_under(isolated / "cache") == sorted(f"mnist/{stem}.gz" for stem in FILES)
    for stem in FILES:
        assert (cache / f"{stem}.gz").read_bytes() == (served / f"{stem}.gz").read_bytes()
    assert sorted(requests) == sorted(f"/{stem}.gz" for stem in FILES)
    np.testing.assert_array_equal(raw.x_train, raw_mnist.x_train)
    np.testing.assert_array_equal(raw.y_train, raw_mnist.y_train)
    # the next load reads the cache: no new request
    load_dataset("mnist", mirrors=(url,))
    assert len(requests) == len(FILES)


def test_download_mirrors_from_env_fall_back_in_order(
    served_mnist: tuple[str, Path, list[str]], isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, requests = served_mnist
    monkeypatch.setenv("CNN_DATA_MIRRORS", f"{url}nowhere, {url.rstrip('/')}")  # 404, then good
    raw = load_dataset("mnist")
    assert len(raw.y_test) == 10_000
    assert requests[:2] == ["/nowhere/train-images-idx3-ubyte.gz", "/train-images-idx3-ubyte.gz"]
    assert len(files_under(isolated / "cache")) == len(FILES)


def test_download_with_a_bad_checksum_keeps_nothing(
    served_mnist: tuple[str, Path, list[str]], isolated: Path
) -> None:
    url, served, requests = served_mnist
    bad = served / "t10k-labels-idx1-ubyte.gz"
    gz = bytearray(bad.read_bytes())
    gz[len(gz) // 2] ^= 0xFF
    bad.write_bytes(bytes(gz))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", mirrors=(url,))
    assert f"{url}t10k-labels-idx1-ubyte.gz" in info.value.message
    assert "hash" in info.value.message.lower()
    assert "/t10k-labels-idx1-ubyte.gz" in requests
    # the three good files were kept; of the bad one no file, partial or temporary, remains
    assert files_under(isolated / "cache") == sorted(
        f"mnist/{stem}.gz" for stem in FILES if stem != "t10k-labels-idx1-ubyte"
    )


def test_download_of_an_unpublished_gz_keeps_nothing(
    mirror: tuple[str, Path, list[str]], isolated: Path, data_dir: Path
) -> None:
    # Unpatched registry: the recompressed training images are not the published .gz bytes.
    url, served, requests = mirror
    for stem in FILES:
        shutil.copyfile(data_dir / "mnist" / f"{stem}.gz", served / f"{stem}.gz")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", mirrors=(url,))
    assert "train-images-idx3-ubyte.gz" in info.value.message
    assert datasets_mod.DATASETS["mnist"].gz_md5["train-images-idx3-ubyte"] in info.value.message
    assert requests == ["/train-images-idx3-ubyte.gz"]
    assert files_under(isolated / "cache") == []


def test_download_from_an_unreachable_mirror(
    mirror: tuple[str, Path, list[str]], isolated: Path
) -> None:
    url, _, _ = mirror  # serves an empty folder: every file is a 404
    with pytest.raises(DataError) as info:
        load_dataset("mnist", mirrors=(url,))
    assert "download:" in info.value.message and "404" in info.value.message
    assert files_under(isolated / "cache") == []
