"""The rung guard: does the ranking at one rung predict the ranking at the next?

ASHA stops a trial at a rung because it ranks low there, betting that it would rank low later
too. When early evaluations mislead (a learning rate that starts fast and ends poorly), that bet
loses. The guard keeps every trial's score at every rung and, for each pair of consecutive
rungs, the Spearman rank correlation over the trials that reached both. While it is below the
threshold (over at least `min_pairs` trials), the lower rung stops no trial: the grace period
grows past it. Every change of verdict is written to `notes`, for the table and the summary.
"""

from __future__ import annotations

import math


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson over ranks); None when undefined."""
    if len(x) != len(y) or len(x) < 2:
        return None
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


class RungGuard:
    """Scores per rung, rank correlation between consecutive rungs, and which rungs may stop.

    Scores are oriented so that higher is better. `rungs` are the milestones (in the
    scheduler's time unit) in increasing order, the last one being a full trial.
    """

    def __init__(
        self, rungs: list[float], enabled: bool = True, min_pairs: int = 5, threshold: float = 0.3
    ) -> None:
        self.rungs = sorted(set(rungs))
        self.enabled = enabled
        self.min_pairs = min_pairs
        self.threshold = threshold
        self.scores: dict[float, dict[str, float]] = {r: {} for r in self.rungs}
        self.untrusted: set[float] = set()
        self.notes: list[str] = []

    def rung_at(self, t: float) -> float | None:
        """The rung a report at time `t` falls on: the highest milestone reached."""
        reached = [r for r in self.rungs if t >= r]
        return reached[-1] if reached else None

    def observe(self, trial_id: str, t: float, score: float) -> float | None:
        """Record a trial's first score at the rung time `t` reaches; returns that rung."""
        rung = self.rung_at(t)
        if rung is None or trial_id in self.scores[rung] or not math.isfinite(score):
            return None
        self.scores[rung][trial_id] = score
        index = self.rungs.index(rung)
        if index > 0:
            self._judge(self.rungs[index - 1])
        return rung

    def correlation(self, rung: float) -> tuple[float | None, int]:
        """Rank correlation between `rung` and the next one, and over how many trials."""
        index = self.rungs.index(rung)
        if index + 1 >= len(self.rungs):
            return None, 0
        low, high = self.scores[rung], self.scores[self.rungs[index + 1]]
        both = [t for t in low if t in high]
        return spearman([low[t] for t in both], [high[t] for t in both]), len(both)

    def trusted(self, rung: float) -> bool:
        """May trials be stopped (or left paused) at this rung?"""
        return rung not in self.untrusted

    def grace_period(self) -> float:
        """The first rung that may stop trials: the effective grace period."""
        for rung in self.rungs:
            if self.trusted(rung):
                return rung
        return self.rungs[-1]

    def summary(self) -> list[str]:
        """One line per rung pair with enough trials: its correlation and verdict."""
        lines = []
        for low, high in zip(self.rungs, self.rungs[1:], strict=False):
            rho, n = self.correlation(low)
            if rho is None:
                continue
            verdict = "not stopping there" if low in self.untrusted else "stopping there"
            lines.append(
                f"evaluations {low:g}->{high:g}: rank correlation {rho:+.2f} over {n} trials "
                f"({verdict})"
            )
        return lines

    def _judge(self, rung: float) -> None:
        if not self.enabled:
            return
        rho, n = self.correlation(rung)
        if rho is None or n < self.min_pairs:
            return
        was_trusted = rung not in self.untrusted
        if rho < self.threshold and was_trusted:
            self.untrusted.add(rung)
            self.notes.append(
                f"guard: evaluation {rung:g} ranks trials poorly for the next rung "
                f"(rank correlation {rho:+.2f} over {n} trials < {self.threshold:g}); "
                f"no trial is stopped there, grace period now {self.grace_period():g}"
            )
        elif rho >= self.threshold and not was_trusted:
            self.untrusted.discard(rung)
            self.notes.append(
                f"guard: evaluation {rung:g} predicts the next rung again (rank correlation "
                f"{rho:+.2f} over {n} trials); stopping there resumes, grace period now "
                f"{self.grace_period():g}"
            )
