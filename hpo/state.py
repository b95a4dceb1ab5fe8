"""Keeps the scheduler's memory across `hpo resume`.

Ray Tune saves the searcher's state with the experiment but not the scheduler's, so a resumed
ASHA would forget every rung it has recorded and promote trials it should stop. This callback
rides along with the callbacks whose state Tune does save.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class SchedulerState(Callback):
    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return {"scheduler": dict(vars(self.scheduler))}

    def set_state(self, state: dict[str, Any]) -> None:
        vars(self.scheduler).update(state["scheduler"])
