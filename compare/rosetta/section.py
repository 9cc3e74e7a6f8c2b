"""The report's rosetta section: each framework's own code for each layer kind."""

from __future__ import annotations

from pathlib import Path

from compare.engine.layout import ROSETTA_HTML
from compare.report.collect import Collected
from compare.report.render import Details, Section
from compare.rosetta.page import KINDS, anchor, line_count


def rosetta_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """The objects and line counts of every framework for each layer kind, and each
    framework's sources folded below (``cnn-compare rosetta`` wrote them)."""
    sources = found.rosetta
    if not sources:
        return []
    frameworks = list(dict.fromkeys(name for by in sources.values() for name in by))
    rows, blocks = [], []
    for kind, by_framework in sources.items():
        title = KINDS.get(kind, kind)
        cells = [title]
        for name in frameworks:
            entries = by_framework.get(name, [])
            listed = "\n".join(
                f"{e['object'].partition(':')[2]} ({line_count(e)})" for e in entries
            )
            cells.append(listed or "-")
            code = "\n\n".join(
                f"# {e['object']}  ({e['file']}:{e['line']})\n{e['source']}" for e in entries
            )
            blocks.append(Details(anchor(kind, name), f"{title}: {name}", code))
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
