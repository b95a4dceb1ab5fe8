"""The report's summary as a terminal table (rich)."""

from __future__ import annotations

from typing import Any

from hpo.report.rundata import RunData
from hpo.report.tables import failures, headline, top_trials

# Where the output is no terminal (a pipe, a log file) nothing limits a line but the reader.
UNBOUNDED_WIDTH = 240


def table_console(file: Any = None) -> Any:
    """A console as wide as the terminal (or `COLUMNS`); one that is no terminal gets lines
    long enough that no number in a table is cut."""
    import os

    from rich.console import Console

    console = Console(file=file)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=file, width=UNBOUNDED_WIDTH)
    return console


def print_summary(run: RunData, file: Any = None) -> None:
    console = table_console(file)
    facts = headline(run)
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        console.print(f"[bold]{key:>{width}}[/bold]  {value}", highlight=False)
    header, rows = top_trials(run)
    if rows:
        top = _table("top trials", header, rows, left=("trial", "outcome"), whole=True)
        console.print(top)
    else:
        console.print("top trials: no trial finished an evaluation")
    if failed := failures(run):
        console.print(_table("failed trials", *failed, left=("error", "tracebacks")))
    if run.notes:
        console.print("[bold]how the search adapted[/bold]")
        for note in run.notes:
            console.print(f"  {note}", highlight=False, markup=False)


def _table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    left: tuple[str, ...],
    whole: bool = False,
) -> Any:
    """`left`: the text columns; `whole`: keep them unwrapped and the first row bold (the
    top trials' ids and outcomes; an error message may wrap)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(
            column,
            justify="left" if column in left else "right",
            no_wrap=whole and column in left,
            overflow="fold",  # a narrow terminal breaks a number or a name, never cuts it
        )
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if whole and i == 0 else None)
    return table
