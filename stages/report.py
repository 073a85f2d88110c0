"""Write reports/report.md and its charts in plots/report/ from the pipeline's metrics files."""

import os
from pathlib import Path

import typer

from transferlm.core.cli import run_stage
from transferlm.core.outputs import staged_outputs
from transferlm.core.paths import REPORT as REPORT_PATH
from transferlm.core.paths import REPORT_PLOTS as PLOTS_DIR
from transferlm.report.report import build_report

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main() -> None:
    # The report and its charts are replaced together, so the markdown never links a missing chart.
    with staged_outputs(REPORT_PATH, PLOTS_DIR) as (report_tmp, plots_tmp):
        plots_tmp.mkdir()
        image_link = Path(os.path.relpath(PLOTS_DIR, REPORT_PATH.parent)).as_posix()
        report_tmp.write_text(build_report(Path("."), plots_tmp, image_link), encoding="utf-8")


if __name__ == "__main__":
    run_stage(app)
