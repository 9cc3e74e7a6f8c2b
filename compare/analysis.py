"""The report's answers to "do they really differ, why, and where?": its analysis sections.

- statistics over seeds (``compare.stats``): each framework's mean with its 95% interval, and
  each pair's difference with its interval, p-value and verdict;
- the ablation (``ablation.json``): each default's measured effect, as a table and a forest
  plot, and the text of the differences table's "measured effect" column;
- the divergence locator (``parity.json``): where each pair first parts, and the heatmaps;
- the cross-evaluation (``crosseval.json``): the same weights in every framework;
- the bench (``bench.json``): throughput against the plain PyTorch loop, and where a training
  step's time goes;
- the rosetta (``rosetta.json``): each framework's source for each layer kind.

Each section appears only when its data is in the folder.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from compare import bench, rosetta
from compare.analysis_figures import fig_crosseval, fig_forest, fig_parity, fig_phases
from compare.collect import Collected
from compare.layout import ROSETTA_FILE, ROSETTA_HTML
from compare.render import Details, FigureFile, Section
from compare.stats import MIN_SEEDS, compare_samples, mean_interval

# topic of the differences table -> the ablation factor that measures it
FACTOR_OF_TOPIC = {
    "init": "init",
    "adam_epsilon": "epsilon",
    "batch_order": "order",
    "same_padding": "padding",
}


def _interval(mean: float, low: float, high: float, scale: float, fmt: str) -> str:
    return f"{scale * mean:{fmt}} [{scale * low:{fmt}}, {scale * high:{fmt}}]"


def statistics_sections(found: Collected) -> list[Section]:
    """Means and pairwise differences over seeds; a note when there are fewer than three."""
    by_framework: dict[str, dict[int, Any]] = defaultdict(dict)
    for run in found.runs:
        by_framework[run.framework][int(run.train_spec["seed"])] = run
    if not by_framework:
        return []
    fewest = min(len(runs) for runs in by_framework.values())
    title = "Is the difference real?"
    if fewest < MIN_SEEDS:
        text = (
            f"Statistics need at least {MIN_SEEDS} seeds per framework (this folder has "
            f"{fewest}): run with --seeds {MIN_SEEDS} or more for 95% intervals and a verdict "
            "on each pair."
        )
        return [Section(title, text)]
    means = []
    for name, runs in by_framework.items():
        acc = mean_interval([r.test_accuracy for r in runs.values()])
        loss = mean_interval([r.test_loss for r in runs.values()])
        means.append(
            [
                name,
                str(acc.n),
                _interval(acc.mean, acc.low, acc.high, 100, ".2f") + " %",
                _interval(loss.mean, loss.low, loss.high, 1, ".4f"),
            ]
        )
    pairs = []
    for a, b in itertools.combinations(by_framework, 2):
        cells = [f"{a} − {b}"]
        verdicts = []
        for field, scale, fmt in (("test_accuracy", 100, "+.3f"), ("test_loss", 1, "+.4f")):
            result = compare_samples(
                {s: getattr(r, field) for s, r in by_framework[a].items()},
                {s: getattr(r, field) for s, r in by_framework[b].items()},
            )
            cells += [
                _interval(result.difference, result.low, result.high, scale, fmt),
                f"{result.p_value:.3g}",
            ]
            verdicts.append(result.verdict)
            test = result.test
        cells += [test, *verdicts]
        pairs.append(cells)
    text = (
        "Mean over seeds with its 95% Student's t interval. Differences between two "
        "frameworks: paired t-test on the per-seed differences when both ran the same seeds "
        "(each seed fixes the batch order, split and, with shared init, the starting "
        "weights), Welch's t-test otherwise; a real difference has p < 0.05."
    )
    return [
        Section(
            title,
            text,
            ["framework", "seeds", "test accuracy [95% CI]", "test loss [95% CI]"],
            means,
        ),
        Section(
            "Pairwise differences",
            "Accuracy in points, loss in nats; [95% interval of the mean difference].",
            [
                "pair",
                "Δ accuracy",
                "p",
                "Δ loss",
                "p",
                "test",
                "verdict (accuracy)",
                "verdict (loss)",
            ],
            pairs,
        ),
    ]


def measured_effects(ablation: dict[str, Any] | None) -> dict[str, str]:
    """Topic key -> one line per framework with the ablation's effect and verdict."""
    if not ablation:
        return {}
    measured: dict[str, str] = {}
    for topic, factor in FACTOR_OF_TOPIC.items():
        lines = []
        for row in ablation["effects"]:
            if row["factor"] != factor:
                continue
            if not row["runs"]:
                lines.append(f"{row['framework']}: {row['why']}")
                continue
            acc = row["accuracy"]
            effect = _interval(acc["difference"], acc["low"], acc["high"], 100, "+.2f")
            lines.append(f"{row['framework']}: {effect} pts, {row['verdict']}")
        if lines:
            measured[topic] = "\n".join(lines)
    return measured


def ablation_sections(found: Collected, figures_dir: Path) -> list[Section]:
    ablation = found.ablation
    if not ablation:
        return []
    rows = []
    for row in ablation["effects"]:
        if not row["runs"]:
            rows.append([row["framework"], row["factor"], "-", "-", "-", "-", row["why"]])
            continue
        acc, loss = row["accuracy"], row["loss"]
        rows.append(
            [
                row["framework"],
                row["factor"],
                _interval(acc["difference"], acc["low"], acc["high"], 100, "+.3f"),
                f"{acc['p_value']:.3g}",
                _interval(loss["difference"], loss["low"], loss["high"], 1, "+.4f"),
                f"{loss['p_value']:.3g}",
                row["verdict"],
            ]
        )
    figure = fig_forest(ablation, figures_dir / "ablation.png")
    text = (
        f"Each arm turns one default back to the framework's own, on seeds "
        f"{', '.join(map(str, ablation['seeds']))}, paired by seed with the baseline (every "
        f"difference neutralised). Rule: {ablation['rule']}."
    )
    figures = (
        [
            FigureFile(
                "ablation-figure",
                "Effects with 95% intervals (filled: real difference; grey: the noise band)",
                figure,
            )
        ]
        if figure
        else []
    )
    return [
        Section(
            "What causes it: the ablation",
            text,
            ["framework", "factor", "Δ accuracy (points)", "p", "Δ loss", "p", "verdict"],
            rows,
            figures,
        )
    ]


def parity_sections(found: Collected, figures_dir: Path) -> list[Section]:
    parity = found.parity
    if not parity:
        return []
    rows = []
    for pair, departure in parity["departures"].items():
        if departure is None:
            rows.append([pair, "agree within tolerance", "", ""])
            continue
        rows.append(
            [
                pair,
                departure["where"],
                f"{departure['value']:.3g} > {departure['tolerance']:g}",
                departure.get("cause") or "",
            ]
        )
    figure = fig_parity(parity, figures_dir / "parity.png")
    text = (
        f"{parity['steps']} step(s) from shared weights on the shared batches, "
        f"{parity['dtype']}, {parity['optimizer']}: every layer's forward output, every "
        "gradient (of each layer's input and weights) and every update, compared in the order "
        f"the computation runs. Tolerances (relative): {parity['tolerances']}."
    )
    figures = [
        FigureFile(
            "parity-figure",
            "log10 of the relative difference per layer and step (darkest: identical; white: "
            "no such quantity, as a layer without weights has no update; outlined: past "
            "tolerance)",
            figure,
        )
    ]
    return [
        Section(
            "Where it starts: the divergence locator",
            text,
            ["pair", "first departure", "relative difference", "known cause"],
            rows,
            figures if figure else [],
        )
    ]


def crosseval_sections(found: Collected, figures_dir: Path) -> list[Section]:
    crosseval = found.crosseval
    if not crosseval:
        return []
    cases = crosseval["cases"]
    rows = [
        [
            c["weights"],
            c["evaluated_in"],
            str(c["image"]),
            f"{c['own_prediction']} -> {c['prediction']} (true {c['label']})",
            f"{c['margin']:.2e}",
            "near-tie" if c["near_tie"] else "NOT a near-tie",
        ]
        for c in cases
    ]
    if cases:
        text = (
            f"The seed-{crosseval['seed']} weights of each framework, run in every framework. "
            f"{len(cases)} prediction(s) differ from the training framework's own; a near-tie "
            f"is a margin between the two highest logits below {crosseval['near_tie']:g} of "
            "the largest: " + ("all are." if crosseval["all_near_ties"] else "NOT all are.")
        )
    else:
        text = (
            f"The seed-{crosseval['seed']} weights of each framework, run in every framework: "
            "every prediction is the same everywhere."
        )
    figure = fig_crosseval(crosseval, figures_dir / "crosseval.png")
    return [
        Section(
            "The same weights everywhere: cross-evaluation",
            text,
            ["trained in", "run in", "test image", "prediction", "margin", "why"] if rows else (),
            rows,
            [
                FigureFile(
                    "crosseval-figure",
                    "Each framework's trained weights (rows) run in every framework (columns)",
                    figure,
                )
            ],
        )
    ]


def bench_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """``cnn-compare bench``'s result: what was measured and each framework's throughput,
    then each one's training step by phase, as a table and stacked bars."""
    result = found.bench
    if not result or not result.get("rows"):
        return []
    rows = result["rows"]
    text = (
        f"What `cnn-compare bench` measured: {bench.describe(result)}. Time / "
        f"{bench.REFERENCE}: the median epoch (or inference) time over that of the plain "
        "PyTorch loop on the same batches. GFLOP/s count a training step as three forward "
        f"passes of {result['forward_mflop_per_image']:.2f} MFLOP per image, with their share "
        "of the machine's peak; peak MiB: the largest peak resident memory of a framework's "
        "processes, read right after training."
    )
    warning = bench.busy_warning(rows)
    if warning:
        text += f" Warning: {warning}"
    made = [Section("Performance", text, *bench.summary_cells(rows))]
    if not any(r["phases_ms"] or r["phases_note"] for r in rows):
        return made  # the bench ran with --phase-steps 0
    figure = fig_phases(
        {bench.label(r): r["phases_ms"] for r in rows}, figures_dir / "bench_phases.png"
    )
    caption = "Milliseconds per training step by phase"
    made.append(
        Section(
            "Performance: where a training step's time goes",
            f"Milliseconds per training step in each phase: the median of "
            f"{result['phase_steps']} steps timed after the epochs, then over the processes. "
            "A framework that cannot split its step says why in the note.",
            *bench.phase_cells(rows),
            [FigureFile("bench-phases-figure", caption, figure)] if figure else [],
        )
    )
    return made


def rosetta_sections(out: Path) -> list[Section]:
    """The objects and line counts of every framework for each layer kind, and each
    framework's sources folded below (``cnn-compare rosetta`` wrote them)."""
    path = Path(out) / ROSETTA_FILE
    if not path.is_file():
        return []
    sources = json.loads(path.read_text())
    frameworks = list(dict.fromkeys(name for by in sources.values() for name in by))
    rows, blocks = [], []
    for kind, by_framework in sources.items():
        title = rosetta.KINDS.get(kind, kind)
        cells = [title]
        for name in frameworks:
            entries = by_framework.get(name, [])
            listed = "\n".join(
                f"{e['object'].partition(':')[2]} ({rosetta.line_count(e)})" for e in entries
            )
            cells.append(listed or "-")
            code = "\n\n".join(
                f"# {e['object']}  ({e['file']}:{e['line']})\n{e['source']}" for e in entries
            )
            blocks.append(Details(rosetta.anchor(kind, name), f"{title}: {name}", code))
        rows.append(cells)
    text = (
        "Each framework's own code for each layer kind of the spec, read from the installed "
        "packages with inspect.getsource (`cnn-compare rosetta`): the functions and methods, "
        "each with its number of lines, then every source with its module, folded. "
        f"{ROSETTA_HTML} beside this report shows them side by side."
    )
    return [
        Section(
            "Rosetta: the same layer in every framework",
            text,
            ["layer kind", *frameworks],
            rows,
            details=blocks,
        )
    ]
