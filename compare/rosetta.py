"""``cnn-compare rosetta``: the same layer in every framework, side by side, from the code.

For each layer kind of the spec (convolution, activation, max-pooling, flatten, dense, dropout
when there is one, the loss and the optimiser's step), every framework's implementation: the
objects its package lists in ``<package>.rosetta.SOURCES``, read with ``inspect.getsource``
in a worker process of that framework (``compare.rosetta_task``), so the page shows the code
that is installed and cannot go stale. Writes ``rosetta.json`` (kind -> framework ->
``[{"object", "file", "line", "source"}]``) and ``rosetta.html`` (self-contained, one column
per framework); a results folder holding ``rosetta.json`` gets a report section from it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from cnn_common.files import atomic_write_bytes, atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec, layers
from compare import registry
from compare.jobs import RosettaJob
from compare.launch import run_checked
from compare.layout import REPORT_HTML, ROSETTA_DIR, ROSETTA_FILE, ROSETTA_HTML, ROSETTA_RECORD
from compare.render import html_head

Sources = dict[str, dict[str, list[dict[str, Any]]]]  # kind -> framework -> entries

# Every kind a package may list, in the order the page shows them, with its heading.
KINDS = {
    "conv": "Convolution",
    "activation": "Activation (ReLU)",
    "pool": "Max-pooling",
    "flatten": "Flatten",
    "dense": "Dense (fully connected)",
    "dropout": "Dropout",
    "loss": "Loss: softmax cross-entropy",
    "adam": "Optimiser step: Adam",
    "sgd": "Optimiser step: SGD with momentum",
}
TITLE = "cnn-rosetta: the same layer in every framework"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.kind { display: grid; gap: 1em; }
.object { font-family: monospace; font-weight: bold; margin: 0.8em 0 0.1em; }
.where { color: #666; font-size: 0.8em; margin: 0; }
.missing { color: #b00; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.5em; overflow-x: auto;
      font-size: 0.75em; margin: 0.3em 0; }
"""


def kinds_of(model_spec: ModelSpec, train_spec: TrainSpec) -> list[str]:
    """The kinds the spec's network and optimiser use, in ``KINDS`` order."""
    unrolled = layers(model_spec)
    used = {layer.kind for layer in unrolled} | {"loss", train_spec.optimizer}
    if any(layer.activation == "relu" for layer in unrolled):
        used.add("activation")
    if "logits" in used:
        used.add("dense")
    return [kind for kind in KINDS if kind in used]


def default_frameworks() -> list[str]:
    """The first registered framework of each package: every implementation once (the Keras
    backends share keras_cnn's layers, which call each backend's own kernels)."""
    first: dict[str, str] = {}
    for name, info in registry.frameworks().items():
        first.setdefault(info.package, name)
    return list(first.values())


def collect_sources(
    frameworks: list[str],
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    out: Path,
    in_process: bool = False,
) -> Sources:
    """Run each framework's rosetta job (in its own process unless ``in_process``); kind ->
    framework -> its entries."""
    for name in frameworks:
        registry.check_installed(name)
    kinds = kinds_of(model_spec, train_spec)
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in frameworks:
        job = RosettaJob.create(
            model_spec=model_spec,
            train_spec=train_spec,
            out=Path(out) / ROSETTA_DIR / name,
            framework=name,
            kinds=kinds,
        )
        run_checked(job, in_process)
        found[name] = json.loads((job.path / ROSETTA_RECORD).read_text())
    return {kind: {name: found[name][kind] for name in frameworks} for kind in kinds}


def line_count(entry: dict[str, Any]) -> int:
    return len(entry["source"].splitlines())


def anchor(kind: str, framework: str = "") -> str:
    """The HTML id of a kind's section, or of one framework's column in it."""
    return f"rosetta-{kind}" + (f"-{framework}" if framework else "")


def _column(kind: str, framework: str, entries: list[dict[str, Any]]) -> str:
    parts = [f"<div id='{anchor(kind, framework)}'><h3>{html.escape(framework)}</h3>"]
    if not entries:
        parts.append("<p class='missing'>(its package lists nothing for this kind)</p>")
    for entry in entries:
        parts.append(f"<p class='object'>{html.escape(entry['object'])}</p>")
        if entry["source"]:
            where = f"{entry['file']}:{entry['line']}, {line_count(entry)} lines"
            parts += [
                f"<p class='where'>{html.escape(where)}</p>",
                f"<pre><code>{html.escape(entry['source'])}</code></pre>",
            ]
        else:
            missing = f"no source: {entry.get('error', 'unknown')}"
            parts.append(f"<p class='missing'>{html.escape(missing)}</p>")
    parts.append("</div>")
    return "".join(parts)


def page(sources: Sources) -> str:
    """``rosetta.html``: a contents list, then one section per kind with a column per
    framework, every source HTML-escaped in a ``<pre>`` block; no external resource."""
    parts = [
        *html_head(TITLE, STYLE),
        "<p>Each column is one framework's own code for the layer kind, read from the "
        "installed packages with <code>inspect.getsource</code> by <code>cnn-compare "
        "rosetta</code>; run it again after an upgrade.</p>",
        "<nav><ol>",
        *(
            f"<li><a href='#{anchor(kind)}'>{html.escape(KINDS.get(kind, kind))}</a></li>"
            for kind in sources
        ),
        "</ol></nav>",
    ]
    for kind, by_framework in sources.items():
        columns = f"grid-template-columns: repeat({len(by_framework)}, minmax(0, 1fr))"
        parts += [
            f"<section id='{anchor(kind)}'><h2>{html.escape(KINDS.get(kind, kind))}</h2>",
            f"<div class='kind' style='{columns}'>",
            *(_column(kind, name, entries) for name, entries in by_framework.items()),
            "</div></section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def run_rosetta(
    frameworks: list[str],
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    out: Path,
    in_process: bool = False,
) -> int:
    """Write ``rosetta.json`` and ``rosetta.html`` into ``out`` and say where (a report of
    ``out`` shows them once rendered again); 1 when some object's source could not be read."""
    out = Path(out)
    sources = collect_sources(frameworks, model_spec, train_spec, out, in_process)
    atomic_write_json(out / ROSETTA_FILE, sources)
    atomic_write_bytes(out / ROSETTA_HTML, page(sources).encode())
    print(
        f"rosetta: {len(sources)} layer kinds x {len(frameworks)} frameworks "
        f"({', '.join(frameworks)})"
    )
    print(f"wrote {out / ROSETTA_FILE} and {out / ROSETTA_HTML}")
    if (out / REPORT_HTML).is_file():
        print(f"to show it in the report: cnn-compare report {out}")
    unread = [
        f"{kind}/{name}: {entry['object']} ({entry.get('error', '')})"
        for kind, by_framework in sources.items()
        for name, entries in by_framework.items()
        for entry in entries
        if not entry["source"]
    ]
    for line in unread:
        print(f"no source for {line}")
    return 1 if unread else 0
