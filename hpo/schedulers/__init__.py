"""The scheduler: when to stop (or pause) a trial, kept apart from the searcher.

- `make_scheduler(spec, max_t)`: `early_terminate` -> a Ray Tune scheduler;
- `GuardedASHA`: Ray's ASHA that stops no trial at a rung whose ranking misleads;
- `PromotionASHA`: ASHA that pauses trials at rungs and resumes them when promoted;
- `RungGuard`: the rank correlation between consecutive rungs, shared by both.
"""

from hpo.schedulers._base import (
    SCHEDULERS,
    evaluations_per_trial,
    make_scheduler,
    scheduler_caveats,
)
from hpo.schedulers._guard import RungGuard, ranks, spearman
from hpo.schedulers.asha import GuardedASHA, milestones
from hpo.schedulers.promotion import PromotionASHA

__all__ = [
    "SCHEDULERS",
    "GuardedASHA",
    "PromotionASHA",
    "RungGuard",
    "evaluations_per_trial",
    "make_scheduler",
    "milestones",
    "ranks",
    "scheduler_caveats",
    "spearman",
]
