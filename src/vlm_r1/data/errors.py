"""Errors and warnings of the data layer: one problem is ``file:line: field: message``."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row: where (``file:line``), which field, and what."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"


def format_problems(problems, limit: int = MAX_LISTED_PROBLEMS) -> str:
    """One problem per line, at most ``limit`` of them, then a count of the rest."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more problems")
    return "\n".join(lines)


class DataError(ValueError):
    """A dataset (or one of its images) is malformed. ``problems`` lists every problem found."""

    def __init__(self, message: str, problems=()):
        self.problems = list(problems)
        super().__init__(message)

    @classmethod
    def from_problems(cls, problems, header: str = "") -> "DataError":
        problems = list(problems)
        body = format_problems(problems)
        return cls(f"{header}\n{body}" if header else body, problems)


class ImageError(DataError):
    """An image file cannot be used: missing, unreadable, truncated, too large, or of an unusable mode."""


class DataWarning(UserWarning):
    """Rows were skipped (``skip_invalid=True``)."""
