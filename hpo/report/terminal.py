"""The report's summary as a terminal table (rich)."""

from __future__ import annotations

from typing import Any

from hpo.report.rundata import RunData
from hpo.report.tables import failures, headline, top_trials


def print_summary(run: RunData, file: Any = None) -> None:
    from rich.console import Console

    console = Console(file=file, width=140)
    for key, value in headline(run).items():
        console.print(f"[bold]{key:>10}[/bold]  {value}", highlight=False)
    header, rows = top_trials(run)
    if rows:
        top = _table("top trials", header, rows, left=("trial", "outcome"), bold_first=True)
        console.print(top)
    else:
        console.print("top trials: no trial finished an evaluation")
    if failed := failures(run):
        console.print(_table("failed trials", *failed, left=("error", "tracebacks")))


def _table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    left: tuple[str, ...],
    bold_first: bool = False,
) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(
            column,
            justify="left" if column in left else "right",
            no_wrap=column in ("trial", "outcome"),
        )
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if bold_first and i == 0 else None)
    return table
