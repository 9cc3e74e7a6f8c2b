"""The report's deployment section: the deployment table of each run that
``cnn-compare convert`` deployed into its default folder (``RUN/converted/convert.json``)."""

from __future__ import annotations

from pathlib import Path

from compare.convert import deploy
from compare.engine.layout import CONVERT_FILE, CONVERTED_DIR
from compare.report.collect import Collected
from compare.report.render import Section


def deployment_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """One section per deployed run: each format's size, accuracy, differing predictions,
    logit difference and speed against its source model."""
    return [
        Section(
            f"Deployment: {run}",
            f"From {run}/{CONVERTED_DIR}/{CONVERT_FILE} (`cnn-compare convert`). "
            + " ".join(deploy.notes(record)),
            deploy.HEAD,
            [deploy.cells(entry) for entry in record["rows"]],
        )
        for run, record in found.deployments.items()
    ]
