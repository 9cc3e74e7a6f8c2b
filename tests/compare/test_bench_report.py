"""The report of a folder ``cnn-compare bench`` wrote into: its "Performance" sections (what
was measured, the throughput table, the step by phase as a table and stacked bars).

The bench.json is built the way ``compare.bench`` builds it, from made-up process
records (``tests.compare.test_bench.record``): no training, no worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec
from compare.bench.measure import BenchOptions, Variant, bench_result
from compare.engine.layout import BENCH_FILE, ROSETTA_FILE
from compare.report.outputs import write_outputs
from tests.compare.test_bench import record
from tests.compare.test_report import check_self_contained

KERAS_NOTE = "Keras compiles forward, backward and the update into one function"


def keras_record(epochs: list[float], infer_s: float) -> dict[str, Any]:
    """A Keras process: its step is one compiled function, so one fused phase and a note."""
    found = record("keras", epochs, infer_s)
    found["phases"] = {"data": 0.0005, "fused": 0.004}
    found["phases_note"] = KERAS_NOTE
    return found


def write_bench(
    out: Path, records: dict[str, list[dict[str, Any]]], variants: tuple[Variant, ...]
) -> dict[str, Any]:
    """``out/bench.json`` as ``cnn-compare bench --out out`` leaves it; return its content."""
    options = BenchOptions(
        variants=variants, model_spec=ModelSpec(), train_spec=TrainSpec(), processes=2, out=out
    )
    result = bench_result(options, records)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / BENCH_FILE, result)
    return result


def section(markdown: str, title: str) -> str:
    """The Markdown of one section: from its heading to the next."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_report_shows_the_bench(tmp_path: Path) -> None:
    records = {
        "pytorch": [record("pytorch", [1.0], 0.10), record("pytorch", [1.2], 0.12)],
        "numpy": [record("numpy", [1.5], 0.2), record("numpy", [2.1], 0.3)],
        "keras": [keras_record([1.3], 0.1), keras_record([1.1], 0.2)],
    }
    variants = (Variant("pytorch"), Variant("numpy"), Variant("keras"))
    result = write_bench(tmp_path, records, variants)
    source = {"object": "numpy_cnn.ops:relu", "file": "ops.py", "line": 1, "source": "pass\n"}
    atomic_write_json(tmp_path / ROSETTA_FILE, {"relu": {"numpy": [source]}})
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    performance = section(markdown, "Performance")
    assert "1,280 training images per epoch" in performance
    assert "medians over 2 fresh process(es) per framework" in performance
    assert "after a warm-up epoch" in performance and "2 thread(s)" in performance
    assert "machine peak 200 GFLOP/s (float32 matrix multiply" in performance
    assert "busy" not in performance
    lines = [line for line in performance.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| framework | train img/s | step ms | time / pytorch |")
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| pytorch", "| numpy", "| keras"]
    numpy_row = lines[2]
    assert f"{1.8 / 1.1:.2f}x" in numpy_row  # median epoch over pytorch's
    assert f"{result['rows'][1]['train_peak_share']:.0%})" in numpy_row
    assert numpy_row.endswith(" | 405 |")  # peak MiB
    phases = section(markdown, "Performance: where a training step's time goes")
    assert "| framework | data | forward + loss | backward | optimiser | forward + backward" in (
        phases
    )
    assert "| numpy | 1.00 | 2.00 | 3.00 | 0.50 |  |  |" in phases
    assert f"| keras | 0.50 |  |  |  | 4.00 | {KERAS_NOTE} |" in phases
    assert "![Milliseconds per training step by phase](figures/bench_phases.png)" in phases
    assert (tmp_path / "figures" / "bench_phases.png").is_file()
    titles = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert titles[-3:-1] == ["## Performance", "## Performance: where a training step's time goes"]
    assert titles[-1].startswith("## Rosetta")  # after the other analysis, before rosetta
    html = (tmp_path / "report.html").read_text()
    assert "<h2 id='performance'>Performance</h2>" in html and "1.64x" in html
    check_self_contained(tmp_path)


def test_a_busy_row_is_marked_and_warned_about(tmp_path: Path) -> None:
    records = {
        "pytorch": [record("pytorch", [1.0], 0.1)],
        "numpy": [record("numpy", [1.5], 0.2, busy=True)],
    }
    write_bench(tmp_path, records, (Variant("pytorch"), Variant("numpy")))
    write_outputs(tmp_path)
    performance = section((tmp_path / "report.md").read_text(), "Performance")
    assert "| numpy (machine busy) |" in performance and "| pytorch |" in performance
    assert (
        "Warning: numpy measured while other processes kept 1.5 cores busy: rerun "
        "`cnn-compare bench` on an idle machine." in performance
    )


def test_rows_without_phases_or_inference_leave_their_cells_blank(tmp_path: Path) -> None:
    def plain(framework: str, native: list[str]) -> dict[str, Any]:
        found = record(framework, [1.0], 0.1)
        found.update(infer_images=0, infer_s=None, native=native)  # --infer-images 0
        return found

    lightning = plain("lightning", [])
    lightning.update(phases={}, phases_note="lightning_cnn has no phase_times")
    records = {"pytorch (native order)": [plain("pytorch", ["order"])], "lightning": [lightning]}
    variants = (Variant("pytorch", ("order",)), Variant("lightning"))
    result = write_bench(tmp_path, records, variants)
    assert "infer_images_per_s" not in result["rows"][0]
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    lines = section(markdown, "Performance").splitlines()
    assert any(line.startswith("| pytorch (native order) | ") for line in lines)
    cells = next(line for line in lines if line.startswith("| lightning |")).split(" | ")
    # no plain pytorch timed: no ratios; no inference timed: no inference cells
    assert [cells[i] for i in (3, 5, 6, 7)] == ["", "", "", ""]
    assert cells[1] == "1,280" and cells[4].endswith("%)")
    phases = section(markdown, "Performance: where a training step's time goes")
    assert "| lightning |  |  |  |  | lightning_cnn has no phase_times |" in phases
    assert "| pytorch (native order) | 1.00 | 2.00 | 3.00 | 0.50 |  |" in phases
    # only pytorch has phases: one bar
    assert (tmp_path / "figures" / "bench_phases.png").is_file()


def test_no_phases_no_figure(tmp_path: Path) -> None:
    run = record("pytorch", [1.0], 0.1)
    run.update(phases={}, phases_note="")  # --phase-steps 0
    write_bench(tmp_path, {"pytorch": [run]}, (Variant("pytorch"),))
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Performance\n" in markdown and "1.00x" in markdown
    assert "where a training step's time goes" not in markdown
    assert not (tmp_path / "figures" / "bench_phases.png").exists()
