"""The report's summary as a terminal table (rich)."""

from __future__ import annotations

from typing import Any

from hpo.report.rundata import RunData
from hpo.report.tables import headline, top_trials


def print_summary(run: RunData, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=140)
    for key, value in headline(run).items():
        console.print(f"[bold]{key:>10}[/bold]  {value}", highlight=False)
    header, rows = top_trials(run)
    table = Table(title="top trials", title_justify="left")
    for column in header:
        left = column in ("trial", "outcome")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i == 0 else None)
    console.print(table)
