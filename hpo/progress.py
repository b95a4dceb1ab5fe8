"""The live trial table: status, sampled values, evaluations and the best so far.

On a terminal it redraws in place (rich); elsewhere (CI logs, Ray Jobs) it prints one line per
finished trial, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hpo.numbers import finite_number
from hpo.results import outcome_of
from hpo.space import base_name
from hpo.spec import JobSpec


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _by_base_name(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config keyed by parameter: a trial draws at most one variant of each."""
    return {base_name(key): value for key, value in config.items()}


# Parameter columns of the live table at most: a strategy search's (strategy, learning rate,
# batch size, freeze.layers, three LoRA ones); fewer where the terminal cannot hold them whole.
TABLE_PARAMS = 8


class TrialTable(Callback):
    """Ray Tune callback that shows the search as it runs."""

    def __init__(self, spec: JobSpec, console: Console | None = None, refresh_s: float = 1.0):
        self.console = console or Console(stderr=True)
        self.metric = spec.primary.name
        self.sign = 1.0 if spec.primary.goal == "maximize" else -1.0
        self.run_cap = spec.run_cap or 0
        # One column per parameter: its variants (`learning_rate@lora`) share the column.
        searched = (base_name(n) for n, p in spec.parameters.items() if p.value is None)
        self.params = list(dict.fromkeys(searched))  # each finished trial's line shows all
        self.columns = self.params[:TABLE_PARAMS]  # the live table, the first few
        self.rows: dict[str, dict[str, Any]] = {}
        self.best: tuple[float, str] | None = None
        self.refresh_s = refresh_s
        self.started = time.monotonic()
        self._live: Live | None = None
        self._drawn = 0.0
        self.notes: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a console and a live display are
        # this process's terminal, not state.
        state = dict(self.__dict__)
        state["console"] = None
        state["_live"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = Console(stderr=True)
        self.__dict__.setdefault("columns", self.params[:TABLE_PARAMS])  # pickled without it

    # What the table knows rides with the search's saved state, so that `hpo resume` shows
    # every trial's evaluations and the best so far, not only what happens after it.
    def get_state(self) -> dict[str, Any]:
        return {"rows": self.rows, "best": self.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rows = dict(state.get("rows", {}))
        self.best = state.get("best")

    # -- Tune events -------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.rows.setdefault(trial.trial_id, {"evals": 0, "last": None, "best": None})
        row.update(status="RUNNING", config=dict(trial.config))
        self._draw()

    on_trial_restore = on_trial_start

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        row = self.rows.setdefault(trial.trial_id, {"config": dict(trial.config), "best": None})
        row["evals"] = result.get("training_iteration", 0)
        value = result.get(self.metric)
        row["last"] = value
        if finite_number(value):
            if row["best"] is None or self.sign * (value - row["best"]) > 0:
                row["best"] = value
            # A tie goes to the later evaluation, as in best.yaml: the checkpoint budget keeps
            # the later of equal scores, so that is the one the search exports.
            if self.best is None or self.sign * (value - self.best[0]) >= 0:
                self.best = (value, trial.trial_id)
        self._draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done(trial, errored=True)

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:  # promotion-type ASHA parks trials; Tune has no pause event
            row = self.rows.get(trial.trial_id)
            if row is not None and trial.status == "PAUSED" and row.get("status") == "RUNNING":
                row["status"] = "PAUSED"
        if time.monotonic() - self._drawn > self.refresh_s:
            self._draw()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for row in self.rows.values():  # cut off by Ctrl-C: a search that ends ends them all
            if row.get("status") in ("RUNNING", "PAUSED"):
                row["status"] = "unfinished"
        self._draw(force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
        for note in self.notes:  # the rung guard's and the hedge's verdicts, in the summary
            self.console.print(note, highlight=False, soft_wrap=True)

    # -- drawing -----------------------------------------------------------------------------
    def _done(self, trial: Any, errored: bool) -> None:
        row = self.rows.setdefault(
            trial.trial_id, {"config": dict(trial.config), "best": None, "evals": 0, "last": None}
        )
        row["status"] = outcome_of(trial.last_result or {}, errored)
        if not self.console.is_terminal:
            self.console.print(self._line(trial.trial_id, row), highlight=False, soft_wrap=True)
        self._draw(force=True)

    def _line(self, trial_id: str, row: dict[str, Any]) -> str:
        going = ("RUNNING", "PAUSED", "unfinished")
        done = sum(1 for r in self.rows.values() if r.get("status") not in going)
        config = _by_base_name(row["config"])
        params = " ".join(f"{p}={_fmt(config.get(p))}" for p in self.params if p in config)
        best = f"{self.metric}={_fmt(self.best[0])} ({self.best[1]})" if self.best else "-"
        evals = row["evals"]
        own = f": best {_fmt(row['best'])}" if row["best"] is not None else ""
        return (
            f"[{done}/{self.run_cap}] {trial_id} {row['status']} after {evals} "
            f"evaluation{'' if evals == 1 else 's'}{own} | {params} | search best {best}"
        )

    def table(self) -> Table:
        elapsed = time.monotonic() - self.started
        best = f"{self.metric} = {_fmt(self.best[0])} (trial {self.best[1]})" if self.best else "-"
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        title = (
            f"hpo: {len(self.rows)}/{self.run_cap} trials ({summary}) | {elapsed:.0f}s | "
            f"best so far: {best}"
        )
        table = Table(title=title, title_justify="left")
        cells = [self._cells(trial_id, r) for trial_id, r in self.rows.items()]
        shown = self._fitting(cells, self.console.width)
        for col in ("trial", "status", *shown, "evals", "last", "best"):
            table.add_column(col, no_wrap=True, overflow="ellipsis")
        for row in cells:
            table.add_row(
                *(row[col] for col in ("trial", "status", *shown, "evals", "last", "best"))
            )
        if self.notes:  # the latest verdict: each replaces the one before
            table.caption = self.notes[-1]
        return table

    def _cells(self, trial_id: str, r: dict[str, Any]) -> dict[str, str]:
        config = _by_base_name(r["config"])
        return {
            "trial": trial_id + (" *" if self.best and self.best[1] == trial_id else ""),
            "status": r.get("status", ""),
            **{p: _fmt(config.get(p, "")) for p in self.columns},
            "evals": str(r.get("evals", 0)),
            "last": _fmt(r.get("last")),
            "best": _fmt(r.get("best")),
        }

    def _fitting(self, cells: list[dict[str, str]], width: int) -> list[str]:
        """The parameter columns that fit the terminal whole, in order: a value cut to `1.3…`
        (1.3e-04 or 1.3e-05?) misleads. Each finished trial's line has them all."""

        def need(col: str) -> int:  # rich's padding and the rule between columns
            return max([len(col), *(len(row[col]) for row in cells)]) + 3

        used = 1 + sum(need(col) for col in ("trial", "status", "evals", "last", "best"))
        shown = []
        for col in self.columns:
            if used + need(col) > width:
                break
            shown.append(col)
            used += need(col)
        return shown

    def _draw(self, force: bool = False) -> None:
        if not self.console.is_terminal:
            return
        now = time.monotonic()
        if not force and now - self._drawn < self.refresh_s:
            return
        self._drawn = now
        if self._live is None:
            self._live = Live(self.table(), console=self.console, auto_refresh=False)
            self._live.start()
        self._live.update(self.table(), refresh=True)
