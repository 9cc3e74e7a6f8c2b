"""The rosetta's page and names: the layer kinds with their headings, ``rosetta.html`` with a
column per framework, and the anchors the report's section links to."""

from __future__ import annotations

import html
from typing import Any

from compare.report.render import html_head

Sources = dict[str, dict[str, list[dict[str, Any]]]]  # kind -> framework -> entries

# Every kind a package may list, in the order the page shows them, with its heading.
KINDS = {
    "conv": "Convolution",
    "activation": "Activation (ReLU)",
    "grouped_conv": "Grouped (depthwise) convolution",
    "batchnorm": "Batch normalisation",
    "pool": "Max-pooling",
    "avgpool": "Average pooling",
    "global_avgpool": "Global average pooling",
    "add": "Add (a residual connection)",
    "flatten": "Flatten",
    "dense": "Dense (fully connected)",
    "dropout": "Dropout",
    "loss": "Loss: softmax cross-entropy",
    "adam": "Optimiser step: Adam",
    "sgd": "Optimiser step: SGD with momentum",
    "weight_decay": "Weight decay (l2 or decoupled)",
    "lr_schedule": "Learning-rate schedule",
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


def line_count(entry: dict[str, Any]) -> int:
    """Lines of one object's source."""
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
