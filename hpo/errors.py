"""Errors the user can act on: they carry every problem found, each naming its key or file."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator


class SpecError(Exception):
    """A spec, a data file or a run directory the user must fix; the CLI exits with code 2."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        """With a source: `invalid spec in FILE: ...`; without one the problem names its own
        key or file (a run directory, a command-line option), and is not called a spec's."""
        lead = f"invalid spec in {self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return f"{lead}{self.problems[0]}"
        lines = [f"{lead}{len(self.problems)} problems"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


@contextlib.contextmanager
def of_spec(source: str) -> Iterator[None]:
    """Problems found in what a spec names (its data files) are reported as that spec's, so
    the message says which file to fix."""
    try:
        yield
    except SpecError as err:
        raise SpecError(err.problems, source=err.source or source) from None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean `x`?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""
