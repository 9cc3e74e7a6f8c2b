"""Tables and figures -> report.md, report.html and history.csv.

The HTML page is self-contained: inline CSS, every figure embedded as a base64 data URI, no
external URL, so it opens offline and can be mailed as one file. The Markdown links the PNGs
in ``figures/`` beside it. A cell may hold several lines (an error message): Markdown gets
``<br>`` (a raw newline would end the table row), HTML gets ``<br>`` after escaping. Code
(``Details``) is folded in ``<details>`` blocks in both, fenced in Markdown.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cnn_common.files import atomic_write_bytes
from compare.engine.layout import FIGURES_DIR
from compare.report.collect import Collected

TITLE = "cnn-rosetta comparison"
HISTORY_HEAD = [
    "framework",
    "seed",
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "time_s",
]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0 2em; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f6f8fa; padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
"""


class FigureFile(NamedTuple):
    name: str  # the figure's anchor in the HTML report
    caption: str
    path: Path  # the PNG, under figures/


class Details(NamedTuple):
    """A block of code folded under a one-line summary (HTML ``<details>``), e.g. a source."""

    name: str  # its anchor in the HTML report
    summary: str
    code: str


class Section(NamedTuple):
    """One titled part of the report: a paragraph, a table, figures, folded code blocks
    (each may be empty)."""

    title: str
    text: str = ""
    head: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    figures: Sequence[FigureFile] = ()
    details: Sequence[Details] = ()


def _md_cell(value: object) -> str:
    return "<br>".join(str(value).replace("|", "\\|").splitlines())


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table; ``|`` escaped and newlines as ``<br>`` so a cell stays in its
    row."""
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_cell(value: object) -> str:
    return "<br>".join(html.escape(line) for line in str(value).splitlines())


def html_table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table, every cell escaped, newlines as ``<br>``."""
    th = "".join(f"<th>{_html_cell(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def write_markdown(path: Path, intro: Sequence[str], sections: Sequence[Section]) -> None:
    """report.md: the intro lines, a table of contents, then each section's text, table and
    figures (linked from ``figures/``)."""
    parts = [f"# {TITLE}", "", *intro, ""]
    parts += [f"- [{s.title}](#{anchor(s.title)})" for s in sections] + [""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        if section.head:
            parts += [md_table(list(section.head), [list(r) for r in section.rows]), ""]
        for figure in section.figures:
            parts += [f"![{figure.caption}]({FIGURES_DIR}/{figure.path.name})", ""]
        for block in section.details:
            fence = "`" * max(3, 1 + max(map(len, re.findall("`+", block.code)), default=0))
            summary = html.escape(block.summary)
            parts += [f"<details><summary>{summary}</summary>", "", f"{fence}python"]
            parts += [block.code.rstrip("\n"), fence, "", "</details>", ""]
    atomic_write_bytes(path, "\n".join(parts).encode())


def anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def section_html(section: Section) -> str:
    """One section as HTML: its titled heading, text, table, figures (base64 data URIs) and
    folded code blocks (the report's and the explorer's)."""
    parts = [f"<h2 id='{anchor(section.title)}'>{html.escape(section.title)}</h2>"]
    if section.text:
        parts.append(f"<p>{_html_cell(section.text)}</p>")
    if section.head:
        parts.append(html_table(list(section.head), [list(r) for r in section.rows]))
    for figure in section.figures:
        data = base64.b64encode(figure.path.read_bytes()).decode()
        caption = html.escape(figure.caption)
        parts += [
            f"<figure id='{figure.name}'>",
            f"<img alt='{caption}' src='data:image/png;base64,{data}'>",
            f"<figcaption>{caption}</figcaption></figure>",
        ]
    if section.details:  # a line of links, then the blocks, folded
        links = (f"<a href='#{d.name}'>{html.escape(d.summary)}</a>" for d in section.details)
        parts.append(f"<p>{' · '.join(links)}</p>")
    for block in section.details:
        parts.append(
            f"<details id='{block.name}'><summary>{html.escape(block.summary)}</summary>"
            f"<pre><code>{html.escape(block.code)}</code></pre></details>"
        )
    return "\n".join(parts)


def html_head(title: str, style: str) -> list[str]:
    """The opening of a self-contained HTML page up to its ``<h1>``: inline CSS only."""
    return [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{style}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]


def write_html(path: Path, intro: Sequence[str], sections: Sequence[Section]) -> None:
    """report.html, self-contained: inline CSS, a table of contents, figures as base64 data
    URIs."""
    parts = [
        *html_head(TITLE, STYLE),
        *(f"<p>{html.escape(line)}</p>" for line in intro),
        "<nav><ol>",
        *(f"<li><a href='#{anchor(s.title)}'>{html.escape(s.title)}</a></li>" for s in sections),
        "</ol></nav>",
    ]
    parts += [section_html(section) for section in sections]
    parts.append("</body></html>")
    atomic_write_bytes(path, "\n".join(parts).encode())


def write_history_csv(path: Path, found: Collected) -> None:
    """history.csv: one row per (framework, seed, epoch)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HISTORY_HEAD)
    for run in found.runs:
        seed = run.train_spec["seed"]
        for h in run.history:
            writer.writerow(
                [
                    run.framework,
                    seed,
                    h.epoch,
                    h.train_loss,
                    h.train_accuracy,
                    h.val_loss,
                    h.val_accuracy,
                    h.time_s,
                ]
            )
    atomic_write_bytes(path, buffer.getvalue().encode())
