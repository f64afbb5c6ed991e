"""Which columns of a table hold what, and a record batch of them as the arrays
:func:`xentcore.score` takes.

:class:`Columns` is what ``xent score``'s ``--*-col`` flags say; :meth:`Columns.select` checks
it against a table's columns (an unknown name lists the ones there are) and gives a
:class:`Selection`, which turns each record batch into a :class:`Part` of numpy arrays:

* predictions from one column (numbers: a binary task; lists or fixed-size lists of K numbers:
  N x K) or from several number columns (``--predictions-cols``: ``p_*`` matches in the
  table's column order, ``a,b,c`` takes them in that order) into one N x K matrix;
* labels: numbers or booleans; strings, turned into class indices through ``class_names``;
  lists of numbers (target distributions, multilabel targets);
* sample weights: numbers; ids: any column, kept as an Arrow array (for ``--out``).

A value that cannot be scored raises :class:`~xentcore.files.RowError` with the file, the global
row and the column: a null, a string where a number belongs, a list of another length than the
rows before, a label that is not a class name. Values the core checks (NaN, ranges, row sums)
are checked by the core, and :meth:`Selection.locate` names their column.

>>> import pyarrow as pa
>>> table = pa.table({"id": ["a", "b"], "p_cat": [0.9, 0.2], "p_dog": [0.1, 0.8],
...                   "y": ["dog", "dog"]})
>>> spec = Columns(predictions_cols="p_*", labels="y", ids="id")
>>> sel = spec.select(table.schema, "t.parquet", class_names=("cat", "dog"))
>>> sel.predictions, sel.columns
(('p_cat', 'p_dog'), ['p_cat', 'p_dog', 'y', 'id'])
>>> part = sel.convert(table.to_batches()[0], "t.parquet", 0)
>>> part.predictions.tolist(), part.labels.tolist()
([[0.9, 0.1], [0.2, 0.8]], [1, 1])
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError
from xentcore.files._lazy import pa, pc
from xentcore.files.errors import FileError, RowError

__all__ = ["Columns", "Part", "Selection"]

#: The column read for predictions when no flag names one.
DEFAULT_PREDICTIONS = "predictions"
#: Class names a message lists before "...".
_SHOWN_NAMES = 10


def _is_number(kind: Any) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _is_list(kind: Any) -> bool:
    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_string(kind: Any) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


@dataclass(frozen=True)
class Columns:
    """The columns named by ``xent score``'s flags (None: not given).

    ``predictions``: one column; ``predictions_cols``: several, as a comma-separated list whose
    items are names or globs (``p_*``: the matching columns in the table's order). Neither:
    the column ``predictions``.
    """

    predictions: str | None = None
    predictions_cols: str | None = None
    labels: str | None = None
    ids: str | None = None
    sample_weights: str | None = None

    def select(
        self, schema: Any, where: str, *, class_names: tuple[str, ...] | None = None
    ) -> Selection:
        """Check the names against ``schema`` (the table ``where``) and their types."""
        names = list(schema.names)
        if self.predictions is not None and self.predictions_cols is not None:
            raise FileError("give --predictions-col or --predictions-cols, not both")
        if self.predictions_cols is not None:
            predictions = _expand(self.predictions_cols, names, where)
        else:
            name = self.predictions or DEFAULT_PREDICTIONS
            if name not in names and self.predictions is None:
                raise FileError(
                    f"{where}: no column {DEFAULT_PREDICTIONS!r}: name the predictions with "
                    f"--predictions-col NAME or --predictions-cols 'p_*' "
                    f"(its columns: {_listing(names)})"
                )
            _known(name, names, where, "--predictions-col")
            predictions = (name,)
        picked = Selection(
            predictions,
            spread=self.predictions_cols is not None,
            labels=_known(self.labels, names, where, "--labels-col"),
            sample_weights=_known(self.sample_weights, names, where, "--sample-weights-col"),
            ids=_known(self.ids, names, where, "--ids-col"),
            class_names=class_names,
        )
        return replace(picked, numeric=picked.check_types(schema, where))


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _known(name: str | None, names: list[str], where: str, flag: str) -> str | None:
    if name is not None and name not in names:
        raise FileError(f"{where}: no column {name!r} ({flag}); its columns: {_listing(names)}")
    return name


def _expand(spec: str, names: list[str], where: str) -> tuple[str, ...]:
    """``--predictions-cols``: each comma-separated item a name, or a glob matched in order."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if any(c in item for c in "*?["):
            matched = [n for n in names if fnmatch.fnmatchcase(n, item)]
            if not matched:
                raise FileError(
                    f"{where}: --predictions-cols {item!r} matches no column; its columns: "
                    f"{_listing(names)}"
                )
            out += matched
        else:
            out.append(_known(item, names, where, "--predictions-cols") or item)
    if not out:
        raise FileError("--predictions-cols names no column")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise FileError(f"--predictions-cols takes {', '.join(map(repr, twice))} twice")
    return tuple(out)


@dataclass
class Part:
    """One record batch as arrays: ``predictions`` (N,) or (N, K), ``labels``, ``sample_weights``
    (numpy, or None) and ``ids`` (an Arrow array, or None)."""

    predictions: npt.NDArray[Any]
    labels: npt.NDArray[Any] | None = None
    sample_weights: npt.NDArray[Any] | None = None
    ids: Any = None

    @property
    def n_rows(self) -> int:
        return int(self.predictions.shape[0])


@dataclass
class Selection:
    """Checked column names, and the conversion of a record batch (:meth:`convert`).

    ``numeric``: the columns that hold numbers (read as float64 from CSV and JSON Lines);
    ``read_ids``: whether :meth:`convert` reads the ids (only ``--out`` writes them).
    ``widths`` remembers the length of the first list seen in a list column, which every later
    row must have (across batches and files); ``dataclasses.replace`` starts afresh.
    """

    predictions: tuple[str, ...]
    spread: bool = False
    labels: str | None = None
    sample_weights: str | None = None
    ids: str | None = None
    class_names: tuple[str, ...] | None = None
    numeric: frozenset[str] = frozenset()
    read_ids: bool = True
    widths: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    @property
    def columns(self) -> list[str]:
        """The columns to read, each once, in the order predictions, labels, weights, ids."""
        wanted = [*self.predictions, self.labels, self.sample_weights]
        if self.read_ids:
            wanted.append(self.ids)
        out: list[str] = []
        for name in wanted:
            if name is not None and name not in out:
                out.append(name)
        return out

    def check_types(self, schema: Any, where: str) -> frozenset[str]:
        """Refuse columns whose type can never be scored; return the columns of numbers.

        Strings pass here: a CSV or JSON Lines column guessed as strings from its first rows
        (one bad value among numbers) is read as float64, and the reader names the bad value's
        row. Labels are numbers unless they are strings or booleans.
        """
        numeric = set(self.predictions)
        if self.sample_weights is not None:
            numeric.add(self.sample_weights)
        for name in self.predictions:
            kind = schema.field(name).type
            ok = _is_number(kind) or _is_string(kind) or pa.types.is_null(kind)
            if not self.spread and _is_list(kind):
                ok = _is_number(kind.value_type) or pa.types.is_null(kind.value_type)
            if not ok:
                expected = "numbers" if self.spread else "numbers or lists of numbers"
                raise FileError(f"{where}: column {name!r} holds {kind}, expected {expected}")
        if self.labels is not None:
            kind = schema.field(self.labels).type
            if _is_number(kind) or (_is_list(kind) and _is_number(kind.value_type)):
                numeric.add(self.labels)
            elif not (_is_string(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
                raise FileError(
                    f"{where}: column {self.labels!r} holds {kind}, expected class indices, "
                    "class names, numbers or lists of numbers"
                )
        if self.sample_weights is not None:
            kind = schema.field(self.sample_weights).type
            if not (_is_number(kind) or _is_string(kind) or pa.types.is_null(kind)):
                raise FileError(
                    f"{where}: column {self.sample_weights!r} holds {kind}, expected numbers"
                )
        return frozenset(numeric)

    def width(self) -> int | None:
        """K of the predictions when the schema alone does not say (a list column): the length
        of the first list read, else None."""
        if self.spread:
            return len(self.predictions)
        return self.widths.get(self.predictions[0])

    def convert(self, batch: Any, where: str, start: int) -> Part:
        """The arrays of ``batch``, whose first row is global row ``start`` of the file
        ``where``. Raises :class:`RowError` for a value that cannot be scored."""
        part = Part(self._predictions(batch, where, start))
        if self.labels is not None:
            part.labels = self._labels(batch.column(self.labels), where, start)
        if self.sample_weights is not None:
            name = self.sample_weights
            part.sample_weights = _numbers(batch.column(name), where, start, name)
        if self.ids is not None and self.read_ids:
            part.ids = batch.column(self.ids)
            _no_nulls(part.ids, where, start, self.ids)
        return part

    def _predictions(self, batch: Any, where: str, start: int) -> npt.NDArray[Any]:
        if not self.spread:
            name = self.predictions[0]
            arr = batch.column(name)
            if _is_list(arr.type):
                return self._matrix(arr, where, start, name)
            return _numbers(arr, where, start, name)
        cols = [_numbers(batch.column(n), where, start, n) for n in self.predictions]
        dtype = np.result_type(*cols)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        out = np.empty((batch.num_rows, len(cols)), dtype=dtype)
        for j, col in enumerate(cols):
            out[:, j] = col
        return out

    def _labels(self, arr: Any, where: str, start: int) -> npt.NDArray[Any]:
        name = self.labels
        assert name is not None
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if _is_string(arr.type):
            return self._class_indices(arr, where, start)
        if _is_list(arr.type):
            return self._matrix(arr, where, start, name)
        return _numbers(arr, where, start, name, booleans=True)

    def _class_indices(self, arr: Any, where: str, start: int) -> npt.NDArray[np.int64]:
        """String labels -> their index in ``class_names``."""
        name = self.labels
        assert name is not None
        names = self.class_names
        if names is None:
            raise FileError(
                f"{where}: column {name!r} holds strings: give the class names in class order "
                "with --class-names a,b,c"
            )
        _no_nulls(arr, where, start, name)
        index = pc.index_in(arr, value_set=pa.array(names, type=arr.type))
        if index.null_count:
            i = _first(index.is_null())
            shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
            value = repr(arr[i].as_py())[:60]
            raise RowError(where, start + i, name, f"{value} is not one of class_names ({shown})")
        out: npt.NDArray[np.int64] = index.to_numpy(zero_copy_only=False).astype(np.int64)
        return out

    def _matrix(self, arr: Any, where: str, start: int, name: str) -> npt.NDArray[Any]:
        """A list column as an N x K matrix: every row K values, K fixed by the first row."""
        _no_nulls(arr, where, start, name)
        n = len(arr)
        if pa.types.is_fixed_size_list(arr.type):
            lengths = np.full(n, arr.type.list_size)
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if not n:
            return np.empty((0, self.widths.get(name, 0)))
        k = self.widths.setdefault(name, int(lengths[0]))
        bad = np.flatnonzero(lengths != k)
        if bad.size:
            i = int(bad[0])
            got = int(lengths[i])
            raise RowError(
                where, start + i, name, f"{got} values, expected {k} (as in the rows before)"
            )
        values = arr.flatten()
        if values.null_count:
            p = _first(values.is_null())
            raise RowError(where, start + p // k, f"{name}[{p % k}]", "null value")
        flat = _numbers(values, where, start, name, element_of=k)
        return flat.reshape(n, k)

    def locate(self, err: InputError, where: str, start: int) -> Exception:
        """The core's error about a part whose first row is global row ``start``: a
        :class:`RowError` (or a :class:`FileError` without a row) naming the column; an error
        about an option is returned as it is."""
        loc = err.location
        field = loc[0] if loc else None
        column: str | tuple[str, ...] | None
        if field == "predictions":
            column = self.predictions if self.spread else self.predictions[0]
        elif field == "labels":
            column = self.labels
        elif field == "sample_weights":
            column = self.sample_weights
        else:
            return err
        if len(loc) > 2 and isinstance(loc[2], int) and isinstance(column, tuple):
            column = column[loc[2]]
        elif len(loc) > 2 and isinstance(loc[2], int):
            column = f"{column}[{loc[2]}]"
        if len(loc) > 1 and isinstance(loc[1], int):
            return RowError(where, start + loc[1], column, err.reason)
        named = column if isinstance(column, str) else ", ".join(column or ())
        return FileError(f"{where}: column {named!r}: {err.reason}")


def _first(mask: Any) -> int:
    """Index of the first true value of an Arrow boolean array."""
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _no_nulls(arr: Any, where: str, start: int, name: str) -> None:
    if arr.null_count:
        raise RowError(where, start + _first(arr.is_null()), name, "null value")


def _numbers(
    arr: Any,
    where: str,
    start: int,
    name: str,
    *,
    booleans: bool = False,
    element_of: int = 0,
) -> npt.NDArray[Any]:
    """A column of numbers as a numpy array (no copy for primitive types without nulls).

    ``element_of`` K: ``arr`` holds the flattened values of a list column, K per row (its
    messages then name the row and the element). Decimals are read as float64; booleans only
    with ``booleans`` (labels). Any other type is refused for the whole column (CSV and JSON
    Lines columns of numbers are read as float64, so that a value that is not a number is
    reported by the reader with its row).
    """
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    kind = arr.type
    if not element_of:
        _no_nulls(arr, where, start, name)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        out: npt.NDArray[Any] = arr.to_numpy(zero_copy_only=False)
        return out
    if pa.types.is_decimal(kind):
        decimals: npt.NDArray[Any] = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return decimals
    if pa.types.is_boolean(kind) and booleans:
        flags: npt.NDArray[Any] = arr.to_numpy(zero_copy_only=False)
        return flags
    raise FileError(f"{where}: column {name!r} holds {kind}, expected numbers")
