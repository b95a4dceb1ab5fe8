"""The searcher's hedge against misleading early evaluations: draw at random once TPE is misled.

TPE learns where good configurations are from every trial, most of them stopped or paused
early by ASHA and ranked by their early scores. When early scores mislead (learning curves that
cross: a configuration that looks best after one evaluation ends among the worst), that model
points at the wrong region, and it keeps proposing there: on the synthetic multi-fidelity
benchmark TPE then missed random search's result in a fifth to a quarter of the seeds, where
random search under the same schedulers missed at most one in twelve (benchmarks/BENCHMARKS.md,
"Ninth session").

The symptom shows in the trials that went on past their first evaluation (ASHA promoted them for
their early score, or they ran to the end): they got worse, where learning curves should rise.
`MisledHedge` watches it - the median fall from such a trial's first evaluation to its latest,
against how far apart configurations score at their first evaluation (the interquartile range
over every trial; where the middle half tied there, of where trials ended) - and while the
fall is larger than `ratio` times that spread (over at least `min_trials` such trials; a warm
start's earlier trials are evidence too), new trials are drawn at random instead of by the
model. On the synthetic benchmark, counting the trials still running or paused, not only the
finished ones, did as well or better where early evaluations mislead, and 5 trials and half
the spread left the mild setting as it was (benchmarks/BENCHMARKS.md, "Seventeenth session").
The verdict is read from the study at each new trial, so it survives `hpo resume` with the
study and changes back if later trials stop falling.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.numbers import finite_number


class Verdict(NamedTuple):
    misled: bool
    reason: str  # empty until enough trials went on past their first evaluation to judge


class MisledHedge(BaseSampler):
    """`model` (TPE), or a seeded random sampler while trials fall after their first evaluation."""

    def __init__(
        self, model: BaseSampler, seed: int, min_trials: int = 5, ratio: float = 0.5
    ) -> None:
        self.model = model
        # TPE's own start-up trials are random draws seeded with `seed`: the same stream here
        # would repeat those configurations once the hedge acts.
        self.random = RandomSampler(seed=seed + 1)
        self.min_trials = min_trials
        self.ratio = ratio
        self.notes: list[str] = []  # each change of verdict, for the table and the summary
        self.verdict = Verdict(False, "")
        self._choice: tuple[int, BaseSampler] | None = None  # (trial number, its sampler)

    def summary(self, study: Study) -> list[str]:
        """Each change of verdict; or, where it never acted, the verdict on the whole study."""
        if self.notes:
            return list(self.notes)
        verdict = misled_verdict(study, self.min_trials, self.ratio)
        if not verdict.reason:
            return []
        if verdict.misled:  # the evidence came in after the last trial was drawn
            return [f"searcher: {verdict.reason}: early evaluations misled TPE, too late to act"]
        return [f"searcher: TPE throughout ({verdict.reason})"]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        verdict = misled_verdict(study, self.min_trials, self.ratio)
        if not verdict.reason:  # too few trials to judge (one that counted failed): as before
            verdict = self.verdict
        if verdict.misled != self.verdict.misled:
            self.notes.append(
                f"searcher: {verdict.reason}: early evaluations mislead TPE, new trials are "
                "drawn at random"
                if verdict.misled
                else f"searcher: {verdict.reason}: new trials from TPE again"
            )
        self.verdict = verdict
        self._choice = (trial.number, self.random if verdict.misled else self.model)
        self.model.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.model.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.model.reseed_rng()
        self.random.reseed_rng()

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if self._choice is None or self._choice[0] != trial.number:
            return self.model  # a trial Optuna asks about without before_trial: the model's
        return self._choice[1]


# Set on the record hpo.search adds for a paused trial that was resumed and ended: the number
# of the record it supersedes (the trial as it was told PRUNED at its pause).
RESUMES = "hpo:resumes"


def misled_verdict(study: Study, min_trials: int, ratio: float) -> Verdict:
    """Is the model misled, and why, from the learning curves of the trials that went on past
    their first evaluation (running, paused or finished, as the study holds them)."""
    if len(study.directions) > 1:
        return Verdict(False, "")  # several objectives report no intermediate values
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    curves = [_curve(t) for t in _one_record_per_trial(study.get_trials(deepcopy=False))]
    pairs = [(sign * c[0], sign * c[-1]) for c in curves if len(c) >= 2]
    if len(pairs) < min_trials:
        return Verdict(False, "")
    gain = statistics.median(last - first for first, last in pairs)
    # How far apart configurations score at their first evaluation; where the middle half tied
    # there (every trial at a majority-class accuracy), how far apart they ended.
    spread, where = _iqr(c[0] for c in curves if c), "first"
    if spread == 0:
        spread, where = _iqr(last for _, last in pairs), "latest"
    change = f"got worse by {-gain:.3g}" if gain < 0 else f"improved by {gain:.3g}"
    reason = (
        f"from their first evaluation to their latest, the {len(pairs)} trials that went on "
        f"past it {change} (median), against an interquartile range of {spread:.3g} between "
        f"{where} evaluations"
    )
    return Verdict(spread > 0 and -gain > ratio * spread, reason)


def _one_record_per_trial(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The study's trials but failed ones, a resumed trial by its final record only."""
    superseded = {t.system_attrs.get(RESUMES) for t in trials}
    return [t for t in trials if t.state != TrialState.FAIL and t.number not in superseded]


def _iqr(values: Any) -> float:
    values = list(values)
    if len(values) < 2:
        return 0.0
    low, _, high = statistics.quantiles(values, n=4)
    return high - low


def _curve(trial: FrozenTrial) -> list[float]:
    """A trial's finite evaluations, in the order it made them."""
    values = trial.intermediate_values
    return [values[step] for step in sorted(values) if finite_number(values[step])]
