"""What counts as a score: a finite real number (not NaN or inf, which a diverged trial
reports, and not a bool, which Python counts as an int)."""

from __future__ import annotations

import math
from typing import TypeGuard


def finite_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
