"""The report from a results folder: every output written, the HTML self-contained.

Uses synthetic run records (no training), so it checks the report machinery alone; the
end-to-end run in test_compare_run.py checks the same properties on a real run.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cnn_common.files import atomic_write_json, atomic_write_npz
from cnn_common.framework import TOPICS
from cnn_common.results import EpochRecord, finish_result
from cnn_common.spec import ModelSpec, TrainSpec, layer_shapes, spec_to_dict
from cnn_common.weights import init_weights, save_weights
from compare.engine import registry
from compare.engine.layout import (
    BENCH_FILE,
    CONFIG_FILE,
    FAILED_FILE,
    FEATURES_FILE,
    PARITY_FILE,
    RESULT_FILE,
    WEIGHTS_FILE,
    run_dir,
)
from compare.report.collect import collect
from compare.report.differences import differences
from compare.report.figures import styles
from compare.report.outputs import write_outputs
from compare.report.render import html_table, md_table
from compare.report.tables import differences_table
from compare.run.command import record_wall

FRAMEWORKS = ("numpy", "keras", "lightning")
EXPECTED_FIGURES = {
    "curves.png",
    "step_loss.png",
    "confusion.png",
    "class_f1.png",
    "feature_maps.png",
    "filters.png",
    "misclassified.png",
}


def fake_run(out: Path, framework: str, seed: int, rng: np.random.Generator) -> None:
    """A run folder as a trainer leaves it, with plausible made-up numbers."""
    spec, train = ModelSpec(), TrainSpec(epochs=2, seed=seed)
    path = run_dir(out, framework, seed)
    y_test = rng.integers(0, 10, 200)
    y_pred = np.where(rng.random(200) < 0.9, y_test, rng.integers(0, 10, 200))
    history = [
        EpochRecord(e, 0.5 / e, 0.8 + 0.05 * e, 0.4 / e, 0.85 + 0.04 * e, 3.0) for e in (1, 2)
    ]
    result = finish_result(
        framework=framework,
        backend=framework,
        device="cpu",
        versions={"numpy": "2"},
        dataset="mnist",
        class_names=[str(i) for i in range(10)],
        model_spec=spec,
        train_spec=train,
        init="shared",
        history=history,
        step_losses=list(np.linspace(2.3, 0.1, 100)),
        test_loss=0.3,
        y_test=y_test,
        y_pred=y_pred,
        n_train=1000,
        n_val=100,
        wall_time_s=7.0,
    )
    path.mkdir(parents=True)
    result.to_json(path / RESULT_FILE)
    save_weights(path / WEIGHTS_FILE, init_weights(spec, seed), spec)
    maps = {
        f"map/{name}": rng.random((4, *shape)).astype(np.float32)
        for name, shape in layer_shapes(spec).items()
        if name.startswith(("conv", "pool"))
    }
    wrong = np.flatnonzero(y_pred != y_test)[:16]
    atomic_write_npz(
        path / FEATURES_FILE,
        {
            "images": rng.random((4, 28, 28, 1)).astype(np.float32),
            **maps,
            "wrong/index": wrong,
            "wrong/images": rng.random((len(wrong), 28, 28, 1)),
            "wrong/predicted": y_pred[wrong],
            "wrong/true": y_test[wrong],
        },
    )


def write_failure(path: Path, kind: str, error: str) -> None:
    """The failure record a worker leaves in its run folder."""
    atomic_write_json(path / FAILED_FILE, {"kind": kind, "error": error, "traceback": ""})


def make_results(out: Path, seeds: int = 1, failed: str | None = None) -> None:
    config = {
        "frameworks": list(FRAMEWORKS),
        "dataset": "mnist",
        "init": "shared",
        "device": "auto",
        "subset": None,
        "seeds": seeds,
        **spec_to_dict(ModelSpec(), TrainSpec(epochs=2)),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        for framework in FRAMEWORKS:
            if framework == failed:
                path = run_dir(out, framework, seed)
                path.mkdir(parents=True)
                write_failure(path, "user", "framework 'keras' needs tensorflow\n  fix: pip")
            else:
                fake_run(out, framework, seed, rng)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("href", "src"):
            if values.get(key):
                self.links.append(values[key] or "")


def parse_html(path: Path) -> _Collector:
    parser = _Collector()
    parser.feed(path.read_text())
    return parser


def check_self_contained(out: Path) -> None:
    """Every figure embedded as a PNG data URI; no external URL anywhere in the page."""
    html_path = out / "report.html"
    parsed = parse_html(html_path)
    figures = sorted((out / "figures").glob("*.png"))
    assert len(parsed.images) == len(figures) >= 1
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # in-page anchors (the table of contents) and data URIs only
    assert all(link.startswith(("data:", "#")) for link in parsed.links)
    assert any(link.startswith("#") for link in parsed.links)
    text = html_path.read_text()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE)
    assert "@import" not in text and "url(" not in text


def test_every_output_is_written(tmp_path: Path) -> None:
    make_results(tmp_path)
    lines = write_outputs(tmp_path)
    for name in ("results.json", "history.csv", "report.md", "report.html"):
        assert (tmp_path / name).is_file(), name
    assert {p.name for p in (tmp_path / "figures").glob("*.png")} == EXPECTED_FIGURES
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["framework"] for r in results["summary"]] == list(FRAMEWORKS)
    assert len(results["runs"]) == 3 and results["failures"] == []
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 and {r["framework"] for r in rows} == set(FRAMEWORKS)
    markdown = (tmp_path / "report.md").read_text()
    for figure in EXPECTED_FIGURES:
        assert f"figures/{figure}" in markdown
    assert "Framework differences" in markdown and "Adam epsilon" in markdown
    assert any("report.html" in line for line in lines)


def test_html_is_self_contained(tmp_path: Path) -> None:
    make_results(tmp_path)
    write_outputs(tmp_path)
    check_self_contained(tmp_path)


def test_failed_framework_is_reported_and_others_kept(tmp_path: Path) -> None:
    make_results(tmp_path, failed="keras")
    lines = write_outputs(tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["framework"] for r in results["summary"]] == ["numpy", "lightning"]
    assert results["failures"][0]["framework"] == "keras"
    assert "needs tensorflow" in (tmp_path / "report.html").read_text()
    assert any("keras" in line and "FAILED" in line for line in lines)
    assert (run_dir(tmp_path, "keras", 0) / FAILED_FILE).is_file()


def test_seeds_are_aggregated_as_mean_and_std(tmp_path: Path) -> None:
    make_results(tmp_path, seeds=3)
    write_outputs(tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    for row in results["summary"]:
        runs = [r for r in results["runs"] if r["framework"] == row["framework"]]
        accs = [r["test_accuracy"] for r in runs]
        assert row["seeds"] == 3
        assert row["test_accuracy"] == pytest.approx(np.mean(accs))
        assert row["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert "±" in (tmp_path / "report.md").read_text()


def test_interrupted_run_is_listed_as_killed(tmp_path: Path) -> None:
    make_results(tmp_path)
    (run_dir(tmp_path, "lightning", 0) / RESULT_FILE).unlink()
    write_outputs(tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["failures"] == [
        {
            "framework": "lightning",
            "seed": 0,
            "kind": "killed",
            "error": results["failures"][0]["error"],
        }
    ]
    assert "--resume" in results["failures"][0]["error"]


def test_report_states_the_image_counts(tmp_path: Path) -> None:
    make_results(tmp_path)
    write_outputs(tmp_path)
    sizes = "1,000 training / 100 validation / 200 test images"
    assert sizes in (tmp_path / "report.md").read_text().splitlines()[2]
    assert sizes in (tmp_path / "report.html").read_text()


def test_the_report_gives_the_total_wall_time_of_every_session(tmp_path: Path) -> None:
    make_results(tmp_path)
    record_wall(tmp_path, 1.7e9, 40.2, resumed=False)
    record_wall(tmp_path, 1.7e9 + 90, 25.5, resumed=True)  # a resumed run adds its time
    write_outputs(tmp_path)
    first = (tmp_path / "report.md").read_text().splitlines()[2]
    assert "wall time 66 s over 2 sessions (training and cross-evaluation)" in first
    record_wall(tmp_path, 1.7e9 + 500, 700.0, resumed=False)  # a new run starts afresh
    write_outputs(tmp_path)
    first = (tmp_path / "report.md").read_text().splitlines()[2]
    assert "wall time 11.7 min (training" in first and "sessions" not in first


def test_a_cell_of_several_lines_stays_in_its_markdown_row() -> None:
    table = md_table(["framework", "why"], [["keras", "needs tensorflow\n  fix: a | b"]])
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[2] == "| keras | needs tensorflow<br>  fix: a \\| b |"
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    cell = html_table(["why"], [["a < b\nc"]])
    assert "<td>a &lt; b<br>c</td>" in cell


def test_failure_of_several_lines_keeps_the_markdown_table_whole(tmp_path: Path) -> None:
    make_results(tmp_path, failed="keras")
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if "needs tensorflow" in line)
    assert row.startswith("| keras |") and row.endswith("fix: pip |")
    assert "needs tensorflow<br>  fix: pip" in (tmp_path / "report.html").read_text()


def test_every_framework_gets_its_own_style() -> None:
    names = [*registry.frameworks(), "someone-elses-cnn"]
    assert len(names) >= 7
    found = styles(names)
    assert list(found) == names
    assert len({style.color for style in found.values()}) == len(names)
    assert len({style.marker for style in found.values()}) == len(names)
    assert len({style.width for style in found.values()}) == len(names)
    # A framework keeps its colour and marker whatever else is in the run.
    alone = styles(["lightning"])["lightning"]
    assert alone[:2] == found["lightning"][:2]


def test_differences_follow_the_frameworks_of_the_run() -> None:
    config = {"init": "shared", **spec_to_dict(ModelSpec(), TrainSpec())}
    names = ["pytorch", "numpy", "not-installed"]
    diffs = differences(config, names)
    for diff, topic in zip(diffs, TOPICS, strict=False):
        assert list(diff.native) == names
        for name in names[:2]:
            assert diff.native[name] == registry.get(name).native[topic]
        assert "not installed" in diff.native["not-installed"]
    assert len(diffs) >= len(TOPICS)
    head, rows = differences_table(diffs, names)
    labels = [registry.get("pytorch").label, registry.get("numpy").label, "not-installed"]
    assert head == ["difference", *labels, "this run", "neutralised"]
    assert all(len(row) == len(head) for row in rows)
    assert rows[0][1] == registry.get("pytorch").native[TOPICS[0]]


def test_the_optimiser_row_names_the_runs_decay_and_schedule() -> None:
    """A run with weight decay and a schedule says so beside its optimiser; a plain run, and
    a record whose train section this version cannot read, say nothing more."""
    scheduled = TrainSpec(weight_decay=0.01, lr_schedule="step", lr_warmup=2)
    rows = {d.key: d for d in differences({**spec_to_dict(ModelSpec(), scheduled)}, ["numpy"])}
    assert rows["adam_epsilon"].this_run.endswith(
        "; l2 weight decay 0.01 on all; step schedule per epoch after 2 of warm-up"
    )
    plain = {d.key: d for d in differences(spec_to_dict(ModelSpec(), TrainSpec()), ["numpy"])}
    assert plain["adam_epsilon"].this_run.endswith("(torch convention)")
    other = spec_to_dict(ModelSpec(), TrainSpec())
    other["train"]["a_later_field"] = 1
    assert differences(other, ["numpy"])[0].this_run.endswith("(torch convention)")


def test_collect_orders_by_seed_then_registry_unknown_last(tmp_path: Path) -> None:
    make_results(tmp_path, seeds=2)
    for seed in range(2):
        path = run_dir(tmp_path, "aaa-unknown", seed)
        path.mkdir(parents=True)
        write_failure(path, "user", "not installed")
    atomic_write_json(tmp_path / PARITY_FILE, {"rows": []})
    atomic_write_json(tmp_path / BENCH_FILE, {"frameworks": {}})
    found = collect(tmp_path)
    order = [(r.framework, r.train_spec["seed"]) for r in found.runs]
    assert order == [(name, seed) for seed in range(2) for name in FRAMEWORKS]
    assert [(f["framework"], f["seed"]) for f in found.failures] == [
        ("aaa-unknown", 0),
        ("aaa-unknown", 1),
    ]
    assert found.parity == {"rows": []} and found.bench == {"frameworks": {}}
    assert found.frameworks == list(FRAMEWORKS)
