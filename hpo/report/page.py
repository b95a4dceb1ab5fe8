"""report.html: one page, no scripts and no network, that references the PNGs beside it."""

from __future__ import annotations

import html
from typing import Any

from hpo.report.pareto import front_table
from hpo.report.rundata import RunData
from hpo.report.tables import confirm_table, failures, headline, top_trials

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.25rem 1rem; }
dl.facts dt { font-weight: 600; color: #555; } dl.facts dd { margin: 0; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f5f5f5; } td { white-space: nowrap; }
td:nth-child(2), td:nth-child(3) { text-align: left; } div.scroll { overflow-x: auto; }
tr.best td { font-weight: 600; background: #eef6fb; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _facts(run: RunData) -> str:
    items = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in headline(run).items())
    return f'<dl class="facts">{items}</dl>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=best' if i == 0 else ''}>"
        + "".join(f"<td>{_esc(c)}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _figure(name: str, caption: str) -> str:
    return (
        f'<figure><img src="{_esc(name)}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def render(run: RunData, figures: list[tuple[str, str, str]]) -> str:
    """The page: headline facts, the top trials, then each (section, file, caption) figure."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hpo report: {_esc(run.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Search {_esc(run.name)}</h1>",
        _facts(run),
        "<h2>Top trials</h2>",
    ]
    header, rows = top_trials(run)
    parts.append(_table(header, rows) if rows else "<p>No trial finished an evaluation.</p>")
    if failed := failures(run):
        parts += ["<h2>Failed trials</h2>", _table(*failed)]
    if run.notes:
        items = "".join(f"<li>{_esc(note)}</li>" for note in run.notes)
        parts += ["<h2>How the search adapted</h2>", f"<ul>{items}</ul>"]
    section = ""
    for title, name, caption in figures:
        if title != section:
            parts.append(f"<h2>{_esc(title)}</h2>")
            section = title
        parts.append(_figure(name, caption))
        if name == "seed_spread.png" and (seeds := confirm_table(run)):
            parts.append(_table(*seeds))
        if name == "pareto_front.png" and (front := front_table(run)):
            parts.append(_table(*front))
    parts.append("</body></html>")
    return "\n".join(parts)
