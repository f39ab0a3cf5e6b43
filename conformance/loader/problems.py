"""What the loader reports: a problem is a `Location` and a message, `SuiteError` holds them.

`JsonPath` addresses a node inside a parsed document (mapping keys and list indexes),
the way every stage of the loader names where a problem is.
"""

from __future__ import annotations

from collections.abc import Iterable

from conformance.cases import Location

JsonPath = tuple[str | int, ...]
Problem = tuple[Location, str]


class SuiteError(Exception):
    """One or more problems in suite files; str() is one "FILE:LINE:COL: message" per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        unique = list(dict.fromkeys(problems))
        if not unique:
            raise ValueError("SuiteError needs at least one problem")
        unique.sort(key=lambda p: (p[0].file, p[0].line, p[0].column))
        self.problems: list[Problem] = unique
        self.location: Location = unique[0][0]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{loc}: {message}" for loc, message in self.problems)

    def __reduce__(self) -> tuple[type[SuiteError], tuple[list[Problem]]]:
        return (SuiteError, (self.problems,))
