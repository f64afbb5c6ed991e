"""The errors of offline scoring: a file that cannot be read, and a bad value in a file's row."""

from __future__ import annotations

__all__ = ["FileError", "RowError"]


class FileError(Exception):
    """A file that cannot be read as asked: missing, not of its format, an unknown column or
    member, files that do not fit together. ``str(err)`` names the file."""


class RowError(FileError):
    """A value of a table file that cannot be scored: a null, a NaN, a number out of range, a
    string where a number belongs, a label that is not a class name...

    ``path`` is the file holding the row, ``row`` its 0-based index over the whole input (all
    files of a dataset, in order), ``column`` the column (``probs[3]``: the fourth value of a
    list column; a tuple of names when a row spread over several columns is at fault; None when
    the whole row is, e.g. a CSV line with too many fields), ``reason`` the message without
    its place.

    >>> str(RowError("eval.parquet", 1234, "p_3", "nan is not a finite number"))
    "eval.parquet: row 1234, column 'p_3': nan is not a finite number"
    >>> str(RowError("eval.csv", 7, ("p_0", "p_1", "p_2"), "row sums to 0.9, expected 1 ± 0.0001"))
    "eval.csv: row 7, columns 'p_0'..'p_2': row sums to 0.9, expected 1 ± 0.0001"
    """

    def __init__(
        self, path: str, row: int, column: str | tuple[str, ...] | None, reason: str
    ) -> None:
        self.path, self.row, self.column, self.reason = path, row, column, reason
        super().__init__(f"{path}: row {row}{_columns(column)}: {reason}")


def _columns(column: str | tuple[str, ...] | None) -> str:
    """``, column 'a'`` / ``, columns 'a'..'z'`` / nothing."""
    if column is None:
        return ""
    if isinstance(column, str):
        return f", column {column!r}"
    if len(column) == 1:
        return f", column {column[0]!r}"
    sep = ", " if len(column) == 2 else ".."
    return f", columns {column[0]!r}{sep}{column[-1]!r}"
