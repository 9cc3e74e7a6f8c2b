"""The explorer's API on a real folder with real framework workers (FastAPI's TestClient)."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnn_common.data import load_test_set
from compare.serve.app import make_app
from compare.serve.folder import Folder, load_folder
from compare.serve.workers import Worker
from tests.compare.serve.conftest import FRAMEWORKS, TEST_IMAGES


@pytest.fixture(scope="module")
def folder(served: Path, data_dir: Path) -> Folder:
    return load_folder(served, data_dir=str(data_dir))


@pytest.fixture(scope="module")
def workers(
    folder: Folder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    logs = tmp_path_factory.mktemp("logs")
    made = {
        name: Worker(name, folder.models[name], logs / f"{name}.log") for name in folder.frameworks
    }
    yield made
    for worker in made.values():
        worker.close()


@pytest.fixture
def client(folder: Folder, workers: dict[str, Worker]) -> Iterator[TestClient]:
    with TestClient(make_app(folder, workers)) as made:
        yield made


def test_the_summary_names_the_runs_and_their_layers(client: TestClient) -> None:
    summary = client.get("/api/summary").json()
    assert summary["frameworks"] == list(FRAMEWORKS)
    assert summary["maps"] == ["conv1", "pool1", "conv2", "pool2"]
    assert summary["test_images"] == TEST_IMAGES
    assert all(0.1 < acc <= 1 for acc in summary["accuracy"].values())


def test_a_test_image_is_predicted_by_every_framework_as_its_run_did(
    client: TestClient, folder: Folder
) -> None:
    for index in (0, 7, TEST_IMAGES - 1):
        answer = client.post("/api/predict", json={"index": index}).json()
        assert answer["label"] == int(folder.y_test[index])
        assert np.allclose(answer["image"], folder.x_test[index, :, :, 0])
        for name, result in answer["results"].items():
            assert abs(sum(result["probabilities"]) - 1) < 1e-6
            # the worker's model is the run's: its prediction is the one the run recorded
            assert result["class"] == folder.predictions[name][index]
            conv1 = result["maps"]["conv1"]
            values = np.frombuffer(base64.b64decode(conv1["data"]), np.float32)
            assert conv1["shape"] == [24, 24, 16] and values.size == 24 * 24 * 16
            assert (values >= 0).all()  # after its ReLU


def test_a_drawing_is_preprocessed_and_predicted(client: TestClient) -> None:
    ink = np.zeros((140, 140), np.uint8)
    ink[20:120, 65:78] = 255  # a one
    drawing = {"width": 140, "height": 140, "data": base64.b64encode(ink.tobytes()).decode()}
    answer = client.post("/api/predict", json={"drawing": drawing}).json()
    image = np.array(answer["image"])
    assert image.shape == (28, 28) and image.max() > 0.9 and answer["label"] is None
    assert set(answer["results"]) == set(FRAMEWORKS)


def test_the_maps_of_two_frameworks_are_of_one_shape_and_their_models_differ(
    client: TestClient,
) -> None:
    answer = client.post("/api/predict", json={"index": 3}).json()["results"]
    a, b = (
        np.frombuffer(base64.b64decode(answer[n]["maps"]["pool2"]["data"]), np.float32)
        for n in FRAMEWORKS
    )
    assert a.shape == b.shape and not np.array_equal(a, b)  # two trained models, two maps


def test_the_kernel_view_recomputes_the_value_in_each_framework(client: TestClient) -> None:
    body = {"index": 1, "layer": "conv2", "row": 2, "col": 3, "channel": 5}
    answer = client.post("/api/explain", json=body).json()
    assert answer["receptive_field"] == [4, 18, 6, 20]
    for result in answer["results"].values():
        assert result["output"] == pytest.approx(result["computed"], rel=1e-4, abs=1e-5)
        assert np.array(result["patch"]).shape == (5, 5, 16)
    pool = client.post("/api/explain", json={**body, "layer": "pool1"}).json()
    assert all(r["kind"] == "pool" and "argmax" in r for r in pool["results"].values())


def test_the_sources_of_a_layer_come_from_each_framework(client: TestClient) -> None:
    answer = client.get("/api/sources/conv1").json()
    assert answer["kind"] == "conv"
    assert "def conv2d_forward" in answer["sources"]["numpy"][0]["source"]
    assert any("forward" in e["source"] for e in answer["sources"]["pytorch"])


def test_the_lists_agree_with_the_runs(client: TestClient, folder: Folder) -> None:
    lists = client.get("/api/lists").json()
    for name in FRAMEWORKS:
        mine = lists["frameworks"][name]
        assert (
            mine["misclassified"]
            == np.nonzero(folder.predictions[name] != folder.y_test)[0].tolist()
        )
        assert sum(map(sum, mine["confusion"])) == TEST_IMAGES
        for cell, indices in mine["cells"].items():
            true, guess = map(int, cell.split(","))
            assert all(
                folder.y_test[i] == true and folder.predictions[name][i] == guess for i in indices
            )
    a, b = (folder.predictions[n] for n in FRAMEWORKS)
    assert [d["index"] for d in lists["disagree"]] == np.nonzero(a != b)[0].tolist()


def test_the_curves_hold_every_epoch_and_step(client: TestClient) -> None:
    curves = client.get("/api/curves").json()
    assert {c["framework"] for c in curves} == set(FRAMEWORKS)
    assert all(len(c["epochs"]) == 1 and len(c["step_losses"]) == 4 for c in curves)


def test_the_statistics_section_is_shown(client: TestClient) -> None:
    titles = [s["title"] for s in client.get("/api/sections").json()]
    assert "Is the difference real?" in titles


def test_a_killed_worker_comes_back_and_the_page_is_told(
    client: TestClient, workers: dict[str, Worker]
) -> None:
    client.post("/api/predict", json={"index": 0})
    pid = client.get("/api/status").json()["numpy"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while workers["numpy"].alive() and time.monotonic() < deadline:  # dead before the request
        time.sleep(0.01)
    answer = client.post("/api/predict", json={"index": 0}).json()["results"]
    assert answer["numpy"]["restarted"] is True and "class" in answer["numpy"]
    assert answer["pytorch"]["restarted"] is False
    assert client.get("/api/status").json()["numpy"]["pid"] != pid


def test_a_slow_framework_gets_a_message_and_the_others_carry_on(
    client: TestClient, workers: dict[str, Worker]
) -> None:
    client.post("/api/predict", json={"index": 2})
    pid = client.get("/api/status").json()["pytorch"]["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, but it answers nothing
    workers["pytorch"].timeout = 2.0
    try:
        answer = client.post("/api/predict", json={"index": 2}).json()["results"]
    finally:
        workers["pytorch"].timeout = 30.0
    assert "took longer than 2 s" in answer["pytorch"]["error"]
    assert "class" in answer["numpy"]
    again = client.post("/api/predict", json={"index": 2}).json()["results"]
    assert again["pytorch"]["restarted"] is True and "class" in again["pytorch"]


def test_a_token_is_required_when_one_is_set(folder: Folder, workers: dict[str, Worker]) -> None:
    with TestClient(make_app(folder, workers, token="s3cret")) as guarded:
        assert guarded.get("/api/summary").status_code == 403
        assert guarded.get("/api/summary?token=wrong").status_code == 403
        page = guarded.get("/?token=s3cret")
        assert page.status_code == 200 and "cnn-rosetta explorer" in page.text
        assert guarded.get("/api/summary").status_code == 200  # the cookie it was given


def test_the_test_set_is_the_runs_own(folder: Folder, data_dir: Path) -> None:
    x, y = load_test_set("mnist", root=data_dir, eval_size=TEST_IMAGES)
    assert np.array_equal(folder.y_test, y) and np.array_equal(folder.x_test, x)


def test_a_residual_network_shows_its_batchnorm_and_add_layers(
    served_resnet: Path, data_dir: Path, tmp_path: Path
) -> None:
    folder = load_folder(served_resnet, data_dir=str(data_dir))
    worker = Worker("numpy", folder.models["numpy"], tmp_path / "numpy.log")
    try:
        with TestClient(make_app(folder, {"numpy": worker})) as client:
            summary = client.get("/api/summary").json()
            kinds = {layer["name"]: layer["kind"] for layer in summary["layers"]}
            shown = client.post("/api/predict", json={"index": 4}).json()["results"]["numpy"]
            assert set(shown["maps"]) == set(summary["maps"])
            for kind in ("batchnorm", "add"):
                layer = next(name for name in summary["maps"] if kinds[name] == kind)
                body = {"index": 4, "layer": layer, "row": 1, "col": 2, "channel": 3}
                done = client.post("/api/explain", json=body).json()["results"]["numpy"]
                assert done["kind"] == kind
                assert done["output"] == pytest.approx(done["computed"], rel=1e-4, abs=1e-5)
    finally:
        worker.close()
