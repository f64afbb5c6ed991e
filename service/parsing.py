"""Raw request body -> a validated request model and its arrays, every limit checked first.

Two paths, one result. A JSON part under ``SCAN_FROM`` (1 MiB) is parsed whole by
pydantic-core's JSON parser and validated by the strict request model (numbers are numbers,
never strings or booleans; NaN / Infinity / 1e400 are rejected at their exact location): its
Python objects take at most ~25 MiB whatever it holds.

From 1 MiB on, the body's bytes are read with numpy before anything is parsed
(:func:`_outline`, ~1.5 ms per MiB of numbers, a fifth of the parse): strings are masked (a
quote counts unless an odd run of backslashes precedes it), brackets give depths, and the
commas and brackets outside strings give exact counts. Before any Python number or string
exists:

* every element a request carries (each member of an array that is not itself an array:
  numbers, strings, ids, OpenAI token objects and their ``top_logprobs`` entries...) counts
  against ``XENT_MAX_ELEMENTS``, and the longest per-item array against ``XENT_MAX_ITEMS``
  (413, the messages of the small path);
* ``predictions`` or ``labels`` rows of unequal length, and ``predictions`` nested deeper than
  N x K, are the 422 xentcore gives, at the first offending row;
* a body that is not one well-formed JSON object is a 422 at its line and column.

Each array field is then validated a piece (~``PIECE`` bytes of JSON) at a time by the very
pydantic type of its field (same messages; locations shifted to the piece), numbers going
straight into one preallocated float64 array (:attr:`Parsed.tensors`, as binary tensors do);
the rest of the object is a small remainder validated by the request model. Sequences are
validated a few at a time; a long one (``BIG`` bytes or more) has its ``token_logprobs``,
``tokens`` and OpenAI ``logprobs.content`` read in pieces too.

**Memory bound** (tests/service/test_memory_limits.py), for a JSON part of B bytes, beyond the
body the server holds: a request refused by its counts, its rows or its syntax is refused by
the scan, in under ``0.5 B + 32 MiB`` (its masks are a few MiB whatever B is; measured 0.14 to
0.43 B at 50 MiB); any other request, refused later or scored, holds 8 bytes per JSON number (a
number takes at least 2 bytes: at most 4 B), the strings it keeps (ids, names: at most one per
item or class) and one piece's objects at a time, so that with xentcore's own copies its peak
stays under ``8 B + 64 MiB`` (measured 4.3 to 6.1 B for 2-byte numbers). OpenAI tokens are kept
as arrays (:class:`OpenAITokens`), never as one object per token or ``top_logprobs`` entry.
Not bounded relative to B: many tiny sequences (a model per sequence, ~800 bytes; at most
``XENT_MAX_ITEMS`` of them).

Binary tensors (see the README): with ``Inference-Header-Content-Length: L`` the first L bytes
are the JSON and the rest are raw arrays, declared in the JSON as ``TensorRef`` objects and
read with ``np.frombuffer`` (no copy) after their sizes, shapes and the limits are checked; a
declared shape numpy cannot hold (a dimension over ``XENT_MAX_ELEMENTS``) is a 422 at its
``shape``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt
import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from service.errors import MAX_ERRORS, RequestInvalid, error_item, pydantic_details
from service.schemas import (
    TENSOR_DTYPES,
    BatchRequest,
    OpenAILogprobs,
    OpenAIToken,
    SequenceIn,
    SequencesRequest,
    TensorRef,
)
from service.schemas.requests import tokens_mismatch
from service.settings import Settings
from xentcore.jsonlists import float_array, int_vector
from xentcore.sequences import CENSORED_LOGPROB

__all__ = [
    "BATCH_ARRAYS",
    "BIG",
    "PIECE",
    "SCAN_FROM",
    "OpenAITokens",
    "Parsed",
    "TensorPath",
    "parse_batch",
    "parse_body",
    "parse_sequences",
]

M = TypeVar("M", bound=BaseModel)
TensorPath = tuple[str | int, ...]
U8 = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]

#: Batch fields that may be sent as binary tensors, as the README's "Binary tensors" lists them.
BATCH_ARRAYS = ("predictions", "labels", "sample_weights", "class_weights")
#: JSON parts from this size on are scanned, then validated a piece at a time.
SCAN_FROM = 1 << 20
#: Bytes of JSON validated at once (an array is cut at a comma near every multiple of it).
PIECE = 1 << 18
#: A sequence of this many bytes of JSON or more has its own arrays read in pieces.
BIG = 1 << 20
#: Bytes the scan reads with one set of numpy masks.
CHUNK = 1 << 20
#: A piece that no comma cuts below this is one absurd value (a 4 MiB number or id): 413.
MAX_PIECE = 1 << 22
#: What a scanned body may hold outside its arrays (options, flag, tensor references).
MAX_REST = 1 << 20
#: Object members the scan keeps apart (a request model has fewer than 30 fields).
MAX_FIELDS = 256
#: pydantic-core's (jiter's) nesting limit: a body nested deeper is invalid JSON.
MAX_DEPTH = 201

#: Per-item arrays of a batch: the longest counts against ``XENT_MAX_ITEMS``.
_ITEM_ARRAYS = ("predictions", "labels", "ids", "sample_weights")
#: Batch fields read in pieces on the scanned path.
_PIECEWISE = frozenset(
    ("predictions", "labels", "sample_weights", "class_weights", "pos_weight", "ids", "class_names")
)


@dataclass(frozen=True)
class OpenAITokens(Sequence[Mapping[str, Any]]):
    """An OpenAI ``logprobs.content`` list kept as arrays: each token's log-prob, and the
    ``top_logprobs`` log-probs of the censored tokens (-9999) only, the one place they are read.

    It reads as the list of ``{"logprob", "top_logprobs"?}`` mappings that
    ``xentcore.sequences.openai_logprobs`` takes, one short-lived mapping at a time.
    """

    logprobs: F64
    tops: Mapping[int, tuple[float, ...]]

    def __len__(self) -> int:
        return int(self.logprobs.size)

    @overload
    def __getitem__(self, j: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, j: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, j: int | slice) -> Any:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        entry: dict[str, Any] = {"logprob": float(self.logprobs[j])}
        tops = self.tops.get(j if j >= 0 else j + len(self))
        if tops is not None:
            entry["top_logprobs"] = [{"logprob": v} for v in tops]
        return entry

    @classmethod
    def of(cls, tokens: Sequence[OpenAIToken]) -> OpenAITokens:
        """The arrays of validated tokens."""
        values = np.fromiter((t.logprob for t in tokens), dtype=np.float64, count=len(tokens))
        tops = {
            j: tuple(top.logprob for top in tokens[j].top_logprobs or ())
            for j in np.flatnonzero(values == CENSORED_LOGPROB).tolist()
        }
        return cls(values, tops)

    @classmethod
    def join(cls, parts: Sequence[OpenAITokens]) -> OpenAITokens:
        if len(parts) <= 1:
            return parts[0] if parts else cls(np.empty(0), {})
        tops: dict[int, tuple[float, ...]] = {}
        offset = 0
        for part in parts:
            tops.update((offset + j, v) for j, v in part.tops.items())
            offset += len(part)
        return cls(np.concatenate([p.logprobs for p in parts]), tops)


@dataclass(frozen=True)
class Parsed(Generic[M]):
    """A validated request and its arrays kept apart from it: binary tensors and the arrays of
    a large JSON body by field path, OpenAI ``logprobs.content`` by sequence index, and the
    size of the body (responses are bounded relative to it)."""

    request: M
    tensors: dict[TensorPath, npt.NDArray[Any]] = field(default_factory=dict)
    openai: dict[int, OpenAITokens] = field(default_factory=dict)
    size: int = 0

    def array(self, path: TensorPath, value: Any) -> Any:
        """The array at ``path`` if there is one, else ``value`` as validated."""
        return self.tensors.get(path, value)


def too_large(what: str) -> HTTPException:
    """A 413 naming the limit that was exceeded."""
    return HTTPException(413, detail=what)


def _check_counts(n_items: int, n_elements: int, settings: Settings) -> None:
    if n_items > settings.max_items:
        raise too_large(f"batch of {n_items} items exceeds XENT_MAX_ITEMS = {settings.max_items}")
    if n_elements > settings.max_elements:
        raise too_large(
            f"batch of {n_elements} numbers exceeds XENT_MAX_ELEMENTS = {settings.max_elements}"
        )


# --- counts of a parsed (small) body --------------------------------------------------------


def _elements(value: Any) -> int:
    """Members of arrays that are not arrays, anywhere in ``value`` (the scan's count)."""
    if isinstance(value, dict):
        return sum(_elements(v) for v in value.values() if isinstance(v, list | dict))
    if not isinstance(value, list):
        return 0
    n = len(value)
    for v in value:
        if isinstance(v, list):
            n += _elements(v) - 1
        elif isinstance(v, dict):
            n += _elements(v)
    return n


def _batch_counts(raw: dict[str, Any]) -> tuple[int, int]:
    """(N, elements) of a JSON batch: the longest per-item array, every element."""
    lengths = [len(v) for k in _ITEM_ARRAYS if isinstance(v := raw.get(k), list)]
    return max(lengths, default=0), _elements(raw)


def _sequence_counts(raw: dict[str, Any]) -> tuple[int, int]:
    """(sequences, elements) of a JSON sequences request."""
    seqs = raw.get("sequences")
    return (len(seqs) if isinstance(seqs, list) else 0), _elements(raw)


# --- JSON errors ------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<what>.*) at line (?P<line>\d+) column (?P<col>\d+)$", re.DOTALL)


def _json_error(what: str, text: bytes | bytearray, pos: int) -> RequestInvalid:
    """``invalid JSON: <what> at line L column C`` for byte ``pos`` of ``text``."""
    if not text:
        line, col = 1, 0
    else:
        pos = min(max(pos, 0), len(text) - 1)
        line = text.count(b"\n", 0, pos) + 1
        col = pos - text.rfind(b"\n", 0, pos)
    return RequestInvalid(
        [error_item((), f"invalid JSON: {what} at line {line} column {col}", "json_invalid")]
    )


def _offset(text: bytes, line: int, col: int) -> int:
    """The byte offset of a 1-based (line, column) of ``text``."""
    start = 0
    for _ in range(line - 1):
        start = text.find(b"\n", start) + 1
    return start + col - 1


def _load(body: bytes | bytearray) -> dict[str, Any]:
    try:
        raw = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError as exc:  # the message has a line and column, never the input
        raise RequestInvalid([error_item((), f"invalid JSON: {exc}", "json_invalid")]) from None
    if not isinstance(raw, dict):
        raise RequestInvalid([error_item((), "expected a JSON object", "model_type")])
    return raw


# --- predictions of another rank -------------------------------------------------------------


def _rank_of(value: Any) -> tuple[int, ...] | None:
    """The shape of JSON ``predictions`` that are neither N nor N x K, else None.

    A number is shape ``()``; nested lists are measured along their first elements (as the
    union's discriminator reads them); a ``TensorRef`` object by its declared ``shape``.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ()
    if isinstance(value, dict):
        shape = value.get("shape")
        if (
            isinstance(shape, list)
            and len(shape) not in (1, 2)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            return tuple(shape)
        return None
    dims = _dims(value)
    return dims if len(dims) > 2 else None


def _dims(value: Any) -> tuple[int, ...]:
    """The lengths of nested lists along their first elements."""
    dims: list[int] = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return tuple(dims)


def _rank_error(shape: tuple[int, ...], loc: TensorPath) -> dict[str, Any]:
    return error_item(loc, f"expected N or N x K, got shape {shape}", "value_error")


def _explain_rank(raw: dict[str, Any], details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``predictions`` of another rank: pydantic's errors inside them (a "valid number" deep in
    a 3-D list, a TensorRef ``shape`` too long) become xentcore's one clear message, at
    ``predictions`` (a TensorRef: at its ``shape``, where the rank was declared)."""
    value = raw.get("predictions")
    shape = _rank_of(value)
    if shape is None:
        return details
    loc = ("predictions", "shape") if isinstance(value, dict) else ("predictions",)
    clear = _rank_error(shape, loc)
    out: list[dict[str, Any]] = []
    for item in details:
        if item["loc"][1:2] != ["predictions"]:
            out.append(item)
        elif clear not in out:
            out.append(clear)
    return out


def _plain_arrays(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[TensorPath, Any]]:
    """``predictions`` and ``labels`` of a small JSON batch that are plain numbers, as arrays
    (:mod:`xentcore.jsonlists`: one C pass, ~1 us for 32 x 10, where the strict model and
    xentcore's ``np.asarray`` take ~60), and ``raw`` with ``[]`` in their place for the model
    to validate the rest (as the scanned path does). Only values the model accepts as they are
    and that give the same array are taken (finite floats and ints within 2**53 in equal rows;
    integer labels as int64, the class indices the model's floats name); anything else stays
    in ``raw``, validated and worded by the model."""
    tensors: dict[TensorPath, Any] = {}
    rest = raw
    for name in ("predictions", "labels"):
        value = raw.get(name)
        if type(value) is not list:
            continue
        array: npt.NDArray[Any] | None = int_vector(value) if name == "labels" else None
        if array is None:
            array = float_array(value)
        if array is None:
            continue
        if rest is raw:
            rest = dict(raw)
        rest[name] = []
        tensors[(name,)] = array
    return rest, tensors


def _plain_model(model: type[M], raw: dict[str, Any], tensors: dict[TensorPath, Any]) -> M | None:
    """The validated model of a body that held ``predictions`` (and ``labels``) as plain
    arrays and nothing else: every such body validates to one model (every other field at its
    default, the arrays ``[]``), validated once per model and shared (request models are only
    read). None for any other body."""
    if len(raw) != len(tensors) or not all((key,) in tensors for key in raw):
        return None
    key = (model, tuple(sorted(raw)))
    cached = _PLAIN_MODELS.get(key)
    if cached is None:
        cached = _PLAIN_MODELS[key] = _validate(model, {name: [] for name in raw})
    out: M = cached
    return out


#: The shared models of :func:`_plain_model`, by (model, fields given).
_PLAIN_MODELS: dict[tuple[type[BaseModel], tuple[str, ...]], Any] = {}


def _validate(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestInvalid(_details(model, raw, exc)) from None


def _details(model: type[BaseModel], raw: dict[str, Any], exc: ValidationError) -> list[Any]:
    details = pydantic_details(
        exc.errors(include_url=False, include_input=False, include_context=False)
    )
    if issubclass(model, BatchRequest):  # the error path only: valid bodies never pay
        details = _explain_rank(raw, details)
    return details


# --- the outline of a large body, from its bytes ---------------------------------------------

_Q, _BS, _LSQ, _RSQ, _LCU, _RCU, _COMMA, _COLON = 34, 92, 91, 93, 123, 125, 44, 58


class _Malformed(Exception):
    """Not one well-formed JSON object: ``what`` (jiter's words) at byte ``pos``."""

    def __init__(self, what: str, pos: int) -> None:
        super().__init__(what, pos)
        self.what, self.pos = what, pos


@dataclass
class _Field:
    """A member of a scanned object: its key, its value's bytes, and for an array value its
    members (level 2 below the object) and their elements (level 3), in counts and cut points.

    ``end`` is the separator (or the object's closer) after the value. Rows: separator ``j``
    is comma event ``(j + 1) K - 1`` of the value when every row has K elements.
    """

    key: int  # first byte after the previous separator (the key, maybe after whitespace)
    colon: int
    start: int = -1
    end: int = -1
    kind: int = -1  # the value's first byte
    nonempty: bool = False
    n_seps: int = 0  # level-2 commas: member separators
    n_events: int = 0  # level-2 and level-3 commas
    sep0: int = -1  # event index of the first separator
    sep0_pos: int = -1  # ... and its position
    first_misplaced: int = -1  # first separator j not at event (j + 1) K - 1
    first_scalar: int = -1  # first member of each kind, and with a container inside
    first_array: int = -1
    first_object: int = -1
    first_deep: int = -1
    first_empty_row: int = -1  # K <= 1 only: the first empty and the first non-empty row
    first_full_row: int = -1
    cuts: list[tuple[int, int, int]] = field(default_factory=list)  # (comma, member, element)
    big: list[tuple[int, int, int]] = field(default_factory=list)  # (member, start, end)
    m_start: int = -1  # the member in progress: where it starts, its kind, events before it
    m_kind: int = -1
    m_events: int = 0

    @property
    def n_members(self) -> int:
        return self.n_seps + 1 if self.nonempty else 0

    @property
    def k(self) -> int:
        """Elements of the first member, as a row: from the first separator's event index."""
        return (self.sep0 if self.sep0 >= 0 else self.n_events) + 1

    @property
    def width(self) -> int:
        """K of rows: ``k``, unless the first row is empty."""
        return 0 if self.first_empty_row == 0 else self.k

    def first_ragged(self) -> int:
        """The first member whose length differs from the first member's (rows only), or -1."""
        found = [self.first_misplaced]
        if self.n_seps and self.n_events != self.n_members * self.k - 1:
            found.append(self.n_seps)  # the last row
        if self.first_empty_row >= 0 and self.first_full_row >= 0:  # K <= 1: 0 or 1?
            found.append(max(self.first_empty_row, self.first_full_row))
        return min((i for i in found if i >= 0), default=-1)


@dataclass
class _Outline:
    start: int = -1
    end: int = -1
    elements: int = 0
    fields: list[_Field] = field(default_factory=list)


@dataclass
class _ScanState:
    in_str: int = 0
    depth: int = 0
    closed: bool = False
    prev_tok: int = 0
    prev_pos: int = -1
    cur: _Field | None = None  # the field whose value is in progress
    open_kinds: list[int] = field(default_factory=list)  # the open containers, outermost first


class _Masks:
    """The byte masks of one chunk, allocated once per scan."""

    def __init__(self, n: int) -> None:
        self.keep = np.empty(n, np.bool_)
        self.tmp = np.empty(n, np.bool_)
        self.low = np.empty(n, np.uint8)


def next_byte(buf: U8, p: int) -> int:
    """The first byte at or after ``p`` that is not whitespace (``buf.size`` if none)."""
    width = 64
    while p < buf.size:
        window = buf[p : p + width]
        hit = np.flatnonzero(window > 32)
        if hit.size:
            return p + int(hit[0])
        p += window.size
        width *= 8
    return int(buf.size)


def prev_byte(buf: U8, p: int) -> int:
    """The last byte at or before ``p`` that is not whitespace (-1 if none)."""
    width = 64
    while p >= 0:
        window = buf[max(p - width + 1, 0) : p + 1]
        hit = np.flatnonzero(window > 32)
        if hit.size:
            return p - window.size + 1 + int(hit[-1])
        p -= window.size
        width *= 8
    return -1


def _unescaped(buf: U8, quotes: Ints) -> Ints:
    """The quotes (positions in ``buf``) that end or start a string: not after an odd run of
    backslashes."""
    after = quotes[(quotes > 0) & (buf[np.maximum(quotes - 1, 0)] == _BS)]
    if after.size == 0:
        return quotes
    escaped = []
    for p in after.tolist():  # usually none: a quote escaped inside a string
        q, width = p - 1, 64
        while q >= 0:
            window = buf[max(q - width + 1, 0) : q + 1]
            other = np.flatnonzero(window != _BS)
            if other.size:
                q = q - window.size + 1 + int(other[-1])
                break
            q -= window.size
            width *= 8
        if (p - 1 - q) % 2:
            escaped.append(p)
    return np.setdiff1d(quotes, np.array(escaped, dtype=quotes.dtype), assume_unique=True)


def _tokens(buf: U8, off: int, end: int, st: _ScanState, m: _Masks) -> Ints:
    """Positions of the structural bytes ``[]{},:`` of ``buf[off:end]`` outside strings.

    ``c & 0xD9 == 0x59`` holds for the four brackets and besides them only for ``Y _ y`` and
    DEL, which JSON allows nowhere outside a string: such a body is invalid anyway, and its
    parser says where. Strings: the candidates after an odd number of quotes are dropped.
    """
    c = buf[off:end]
    n = c.size
    keep, tmp, low = m.keep[:n], m.tmp[:n], m.low[:n]
    np.bitwise_and(c, 0xD9, out=low)
    np.equal(low, 0x59, out=keep)
    np.equal(c, _COMMA, out=tmp)
    keep |= tmp
    np.equal(c, _COLON, out=tmp)
    keep |= tmp
    raw = buf.base  # the body's bytes: memchr says at once whether the chunk has a quote
    quoted = st.in_str or not isinstance(raw, bytes | bytearray) or raw.find(b'"', off, end) >= 0
    if quoted:
        np.equal(c, _Q, out=tmp)
        keep |= tmp
    idx = np.flatnonzero(keep)
    idx += off
    if not quoted:
        return idx
    is_q = buf[idx] == _Q
    if is_q.any() or st.in_str:
        quotes = _unescaped(buf, idx[is_q])
        idx = idx[~is_q]
        before = np.searchsorted(quotes, idx)
        if st.in_str:
            before += 1
        idx = idx[(before & 1) == 0]
        st.in_str = (st.in_str + quotes.size) & 1
    return idx


@dataclass
class _Chunk:
    buf: U8
    t: U8
    pos: Ints
    d: npt.NDArray[np.int16]
    is_close: Bools
    c23: Bools


def _outline(buf: U8, a: int, b: int, *, root: bool) -> _Outline:
    """The members of the JSON object in ``buf[a:b]``, read ``CHUNK`` bytes at a time (the
    root: also its well-formedness and its element count)."""
    out = _Outline()
    st = _ScanState()
    masks = _Masks(min(CHUNK, b - a))
    for off in range(a, b, CHUNK):
        _scan_chunk(buf, off, min(off + CHUNK, b), st, out, masks, root=root)
    if out.start < 0:
        raise _Malformed("EOF while parsing a value", b)
    if st.in_str:
        raise _Malformed("EOF while parsing a string", b - 1)
    if st.depth > 0:  # the parser's words: it was expecting a value, or inside a container
        last = prev_byte(buf, b - 1)
        if buf[last] in (_COMMA, _COLON):
            raise _Malformed("EOF while parsing a value", b - 1)
        kind = "a list" if st.open_kinds[-1] == _LSQ else "an object"
        raise _Malformed(f"EOF while parsing {kind}", b - 1)
    return out


def _after_closers(
    buf: U8,
    t: U8,
    pos: Ints,
    d: npt.NDArray[np.int16],
    is_open: Bools,
    is_close: Bools,
    st: _ScanState,
) -> None:
    """A closer is followed by whitespace, a comma or another closer: a stray bracket is named
    where it stands (in compact JSON; else the parser of its piece names it)."""
    closers = np.flatnonzero(is_close & (d > 0))
    if closers.size == 0:
        return
    after = np.minimum(pos[closers] + 1, buf.size - 1)
    nxt = buf[after]
    bad = np.flatnonzero((nxt > 32) & (nxt != _COMMA) & (nxt != _RSQ) & (nxt != _RCU))
    if bad.size == 0:
        return
    i = int(closers[bad[0]])
    opens = np.flatnonzero(is_open[:i] & (d[:i] == d[i]))
    kind = int(t[opens[-1]]) if opens.size else st.open_kinds[int(d[i]) - 1]
    raise _Malformed(f"expected `,` or `{']' if kind == _LSQ else '}'}`", int(after[bad[0]]))


def _match_brackets(t: U8, pos: Ints, d: npt.NDArray[np.int16], st: _ScanState) -> None:
    """Each closer must close the kind of container it is in (``[...}`` is no JSON).

    At each nesting level, brackets alternate opener, closer in order: a closer's opener is
    the bracket before it at its level, or (the first at its level in this chunk) one of an
    earlier chunk, from ``st.open_kinds``, which this leaves as at the chunk's end.
    """
    low = t | 32
    br = np.flatnonzero((low == _LCU) | (low == _RCU))
    if br.size == 0:
        return
    opener = low[br] == _LCU
    level = d[br] + (~opener).astype(np.int16)  # an opener's depth after it, a closer's before
    order = np.argsort(level, kind="stable")
    lv, at, opener = level[order], br[order], opener[order]
    kinds = t[at]
    head = np.ones(lv.size, np.bool_)
    head[1:] = lv[1:] != lv[:-1]
    partner = np.empty_like(kinds)
    partner[1:] = kinds[:-1]
    carried = np.flatnonzero(head & ~opener)
    partner[carried] = [st.open_kinds[v - 1] for v in lv[carried].tolist()]
    bad = np.flatnonzero(~opener & ((partner ^ kinds) != 6))  # "[" 5B "]" 5D, "{" 7B "}" 7D
    if bad.size:
        i = bad[int(np.argmin(pos[at[bad]]))]
        want = "]" if partner[i] == _LSQ else "}"
        raise _Malformed(f"expected `,` or `{want}`", int(pos[at[i]]))
    depth = int(d[-1])
    stack = st.open_kinds[:depth] + [0] * (depth - len(st.open_kinds))
    for j in np.flatnonzero(np.append(head[1:], True)).tolist():  # the last at each level
        if opener[j] and lv[j] <= depth:
            stack[lv[j] - 1] = int(kinds[j])
    st.open_kinds = stack


def _find_start(buf: U8, off: int, end: int, out: _Outline) -> None:
    """The object's opening brace, once the first byte that is not blank is in the chunk."""
    first = next_byte(buf, off)
    if first < end:
        if buf[first] != _LCU:
            raise _Malformed("expected an object", first)
        out.start = first


def _scan_chunk(
    buf: U8, off: int, end: int, st: _ScanState, out: _Outline, masks: _Masks, *, root: bool
) -> None:
    pos = _tokens(buf, off, end, st, masks)
    if out.start < 0:
        _find_start(buf, off, end, out)
    if pos.size == 0:
        return
    if st.closed:
        raise _Malformed("trailing characters", int(pos[0]))
    t = buf[pos]
    low = t | 32
    is_open = low == _LCU
    is_close = low == _RCU
    step = is_open.astype(np.int16)
    step -= is_close
    d = np.cumsum(step, dtype=np.int16)
    d += st.depth
    if int(d.min()) <= 0:  # the object closes: nothing may follow
        at = int(np.argmax(d <= 0))
        if at != t.size - 1:
            raise _Malformed("trailing characters", int(pos[at + 1]))
        st.closed = True
        out.end = int(pos[-1]) + 1
        after = next_byte(buf, out.end)
        if root and after < buf.size:
            raise _Malformed("trailing characters", after)
    if int(d.max()) > MAX_DEPTH:
        raise _Malformed("recursion limit exceeded", int(pos[int(np.argmax(d > MAX_DEPTH))]))
    _after_closers(buf, t, pos, d, is_open, is_close, st)
    _match_brackets(t, pos, d, st)
    is_comma = t == _COMMA
    is_colon = t == _COLON
    if root:
        out.elements += _element_share(buf, t, pos, is_comma, is_colon, st)
    events = np.flatnonzero(((is_comma | is_colon) & (d == 1)) | (is_close & (d == 0)))
    c23 = is_comma & ((d == 2) | (d == 3))
    ch = _Chunk(buf, t, pos, d, is_close, c23)
    lo = 0
    for e in [*events.tolist(), t.size]:
        if st.cur is not None and st.cur.kind == _LSQ and e > lo:
            _array_tokens(st.cur, ch, lo, e)
        if e == t.size:
            break
        lo = e + 1
        if t[e] == _COLON:
            if len(out.fields) >= MAX_FIELDS:
                raise _Malformed("too many fields", int(pos[e]))
            f = _Field(key=(int(pos[e - 1]) if e else st.prev_pos) + 1, colon=int(pos[e]))
            out.fields.append(f)
            _start_value(f, buf, int(pos[e]))
            st.cur = f
        elif st.cur is not None:
            _end_value(st.cur, buf, int(pos[e]))
            st.cur = None
    st.depth = int(d[-1])
    st.prev_tok = int(t[-1])
    st.prev_pos = int(pos[-1])


def _element_share(
    buf: U8, t: U8, pos: Ints, is_comma: Bools, is_colon: Bools, st: _ScanState
) -> int:
    """This chunk's share of the elements: members of arrays that are not arrays.

    Members of arrays = commas in arrays + non-empty arrays, and commas in objects = colons -
    non-empty objects; the arrays among array members are those after "[" or ",". A "["
    followed by "]" holds one scalar or nothing: the bytes between them decide.
    """
    prev = np.empty_like(t)
    prev[0] = st.prev_tok
    prev[1:] = t[:-1]
    is_sq = t == _LSQ
    nested = int(np.count_nonzero(is_sq & ((prev == _LSQ) | (prev == _COMMA))))
    full_objects = int(np.count_nonzero((prev == _LCU) & (t != _RCU)))
    pairs = np.flatnonzero((prev == _LSQ) & (t == _RSQ))
    empty = 0
    if pairs.size:
        close = pos[pairs]
        opens = np.empty_like(close)
        opens[pairs > 0] = pos[pairs[pairs > 0] - 1]
        opens[pairs == 0] = st.prev_pos
        gap = close - opens > 1
        solid = gap & ((buf[np.minimum(opens + 1, close)] > 32) | (buf[close - 1] > 32))
        empty = int(np.count_nonzero(~gap))
        for i in np.flatnonzero(gap & ~solid).tolist():  # "[ x ]" or "[ ]"
            empty += next_byte(buf, int(opens[i]) + 1) == int(close[i])
    # a "[" ending the chunk is counted with the token after it
    full_arrays = int(np.count_nonzero(is_sq)) - empty - int(t[-1] == _LSQ)
    full_arrays += int(st.prev_tok == _LSQ)
    commas = int(np.count_nonzero(is_comma)) - int(np.count_nonzero(is_colon))
    return commas + full_objects + full_arrays - nested


def _start_value(f: _Field, buf: U8, colon: int) -> None:
    f.start = next_byte(buf, colon + 1)
    f.kind = int(buf[f.start]) if f.start < buf.size else -1
    if f.kind == _LSQ:
        first = next_byte(buf, f.start + 1)
        f.nonempty = first < buf.size and buf[first] != _RSQ
        f.m_start, f.m_events = f.start + 1, 0
        if f.nonempty:
            f.m_kind = int(buf[first])
            _kinds(f, buf[first : first + 1], 0)


def _end_value(f: _Field, buf: U8, at: int) -> None:
    f.end = at
    if f.kind == _LSQ and f.nonempty:
        _end_member(f, prev_byte(buf, at - 1))  # at the array's closer


def _end_member(f: _Field, at: int) -> None:
    if at - f.m_start >= BIG:
        f.big.append((f.n_seps, f.m_start, at))


def _kinds(f: _Field, kinds: U8, first: int) -> None:
    """Members ``first, first + 1, ...`` begin with the bytes ``kinds``."""
    for name, mask in (
        ("first_array", kinds == _LSQ),
        ("first_object", kinds == _LCU),
        ("first_scalar", (kinds != _LSQ) & (kinds != _LCU)),
    ):
        if getattr(f, name) < 0 and mask.any():
            setattr(f, name, first + int(np.argmax(mask)))


def _empty(buf: U8, t: U8, pos: Ints, opens: Ints) -> Bools:
    """Whether each "[" at token index ``opens`` is an empty array (the bytes decide)."""
    nxt = np.minimum(opens + 1, t.size - 1)
    out: Bools = (t[nxt] == _RSQ) & (opens + 1 < t.size)
    at = pos[opens]
    for i in np.flatnonzero(out & (pos[nxt] - at > 1)).tolist():
        out[i] = next_byte(buf, int(at[i]) + 1) == int(pos[nxt[i]])
    for i in np.flatnonzero(opens + 1 == t.size).tolist():
        out[i] = buf[next_byte(buf, int(at[i]) + 1)] == _RSQ
    return out


def _array_tokens(f: _Field, ch: _Chunk, lo: int, hi: int) -> None:
    """Tokens ``lo:hi`` of the chunk lie in the array value of ``f`` (its opener included when
    it is token ``lo``, its closer excluded)."""
    buf, t, pos, d = ch.buf, ch.t, ch.pos, ch.d
    if pos[lo] == f.start:
        lo += 1
    if not f.nonempty or lo >= hi:
        return
    ev = np.flatnonzero(ch.c23[lo:hi])
    ev += lo
    is_sep = d[ev] == 2
    at_sep = np.flatnonzero(is_sep)  # indices in ev
    seps = ev[at_sep]  # token indices
    sep_event = f.n_events + at_sep
    base = f.n_seps
    kinds = np.empty(0, np.uint8)
    if seps.size:  # each separator starts a member: its kind is the next token's
        nxt = seps + 1
        kinds = t[np.minimum(nxt, t.size - 1)]
        if nxt[-1] == t.size:
            kinds[-1] = buf[next_byte(buf, int(pos[seps[-1]]) + 1)]
        _kinds(f, kinds, base + 1)
        if f.sep0 < 0:
            f.sep0, f.sep0_pos = int(sep_event[0]), int(pos[seps[0]])
        if f.first_misplaced < 0:
            j = base + np.arange(seps.size)
            bad = np.flatnonzero(sep_event != (j + 1) * f.k - 1)
            if bad.size:
                f.first_misplaced = int(j[bad[0]])
    dd = d[lo:hi]
    if f.first_deep < 0:
        deep = np.flatnonzero(dd >= 4)
        if deep.size:
            f.first_deep = base + int(np.searchsorted(seps, deep[0] + lo))
    if (f.first_empty_row < 0 or f.first_full_row < 0) and (f.sep0 < 0 or f.k <= 1):
        rows = np.flatnonzero((t[lo:hi] == _LSQ) & (dd == 3))
        rows += lo
        if rows.size:
            empty = _empty(buf, t, pos, rows)
            for name, mask in (("first_empty_row", empty), ("first_full_row", ~empty)):
                if getattr(f, name) < 0 and mask.any():
                    i = int(rows[int(np.argmax(mask))])
                    setattr(f, name, base + int(np.searchsorted(seps, i)))
    _cut_points(f, pos, ev, at_sep, kinds, base)
    if seps.size:
        ends = pos[seps]
        starts = np.empty_like(ends)
        starts[0] = f.m_start
        starts[1:] = ends[:-1] + 1
        for i in np.flatnonzero(ends - starts >= BIG).tolist():
            f.big.append((base + i, int(starts[i]), int(ends[i])))
        f.n_seps += seps.size
        f.m_start = int(ends[-1]) + 1
        f.m_kind = int(kinds[-1])
        f.m_events = int(sep_event[-1]) + 1
    f.n_events += ev.size


def _cut_points(f: _Field, pos: Ints, ev: Ints, at_sep: Ints, kinds: U8, base: int) -> None:
    """Note, before each multiple of ``PIECE`` bytes, a comma to cut the value at: the last
    member separator in that stretch, else the last comma between the elements of a row (never
    one inside an object). Whole rows make pieces numpy converts at C speed."""
    if ev.size == 0:
        return
    where = pos[ev]
    lo, hi = int(where[0]), int(where[-1])
    ends = np.arange((lo // PIECE + 1) * PIECE, hi + PIECE, PIECE)  # stretch ends
    before = np.searchsorted(where, ends) - 1  # the last comma of each stretch
    seps_at = where[at_sep]
    j = np.searchsorted(seps_at, ends) - 1  # ... and the last separator
    prev_end = -1
    for k, s in zip(before.tolist(), j.tolist(), strict=True):
        if k <= prev_end:
            continue
        if s >= 0 and at_sep[s] > prev_end:  # a separator in this stretch
            f.cuts.append((int(seps_at[s]), base + s + 1, 0))
            prev_end = int(at_sep[s])
        elif s >= 0 and kinds[s] == _LSQ:  # inside row base + s + 1
            f.cuts.append((int(where[k]), base + s + 1, k - int(at_sep[s])))
            prev_end = k
        elif s < 0 and f.m_kind == _LSQ:  # inside the row that began before
            f.cuts.append((int(where[k]), base, f.n_events - f.m_events + k + 1))
            prev_end = k


# --- a large body, validated a piece at a time ----------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """The members ``buf[a:b]`` of an array between two of its commas (or its brackets): read
    as ``[`` + them + ``]``, or ``[[`` + them when they start inside row ``member`` at element
    ``element``, closed by ``]]`` when they end inside a row."""

    a: int
    b: int
    member: int
    element: int
    ends_in_row: bool
    last: bool

    @property
    def prefix(self) -> bytes:
        return b"[[" if self.element else b"["

    def text(self, buf: U8) -> tuple[bytes, int]:
        """The piece's JSON, and where its members start in it.

        A cut comma is never in a piece; when a syntax error touches one, the text keeps it in
        view (a member on its far side), so the parser words it as for the whole body: ``,,``
        and ``[,`` "expected value", ``,]`` "trailing comma".
        """
        body = buf[self.a : self.b].tobytes()
        first = self.member == self.element == 0
        lo, hi = next_byte(buf, self.a), prev_byte(buf, self.b - 1)
        if lo >= self.b:  # nothing between two commas (or a bracket and a comma)
            head = b"[" if first else b"[0,"
            return head + body + (b"]" if self.last else b",0]"), len(head)
        if not first and buf[lo] in (_COMMA, _RSQ):
            return b"[0," + body + b"]", 3
        if buf[hi] in (_COMMA, _LSQ) and not self.last:
            return self.prefix + body + b",0]", len(self.prefix)
        return self.prefix + body + (b"]]" if self.ends_in_row else b"]"), len(self.prefix)

    def at(self, offset: int) -> int:
        """The body byte at ``offset`` bytes into the members (the brackets: the ends)."""
        return min(max(self.a + offset, self.a), self.b)

    def loc(self, loc: Sequence[Any]) -> list[Any]:
        """A location in the piece -> in the whole array."""
        parts = list(loc)
        ints = [i for i, p in enumerate(parts) if isinstance(p, int) and not isinstance(p, bool)]
        if ints:
            row = parts[ints[0]]
            if row == 0 and self.element and len(ints) > 1:
                parts[ints[1]] += self.element
            parts[ints[0]] = self.member + row
        return parts


def _pieces(f: _Field, last: int, skip: Sequence[tuple[int, int, int]] = ()) -> list[_Piece]:
    """The members of the array value of ``f`` (closer at ``last``) cut at its cut points,
    without the members ``skip`` ((member, start, end): read on their own)."""
    commas = {c: (m, e) for c, m, e in f.cuts if f.start < c < last}
    for member, start, end in skip:
        if start - 1 > f.start:
            commas[start - 1] = (member, 0)
        if end < last:
            commas[end] = (member + 1, 0)
    skipped = {start for _, start, _ in skip}
    order = sorted(commas)
    starts = [(f.start + 1, 0, 0), *((c + 1, *commas[c]) for c in order)]
    out = []
    for i, (a, member, element) in enumerate(starts):
        final = i == len(order)
        b = last if final else order[i]
        if a not in skipped:
            in_row = not final and commas[b][1] > 0
            out.append(_Piece(a, b, member, element, in_row, final))
    return out


class _Errors:
    """The errors of a scanned body: validation errors (then sorted by field), or the first
    JSON syntax error by position, which is then the only one (as when parsed whole)."""

    def __init__(self, text: bytes | bytearray, order: Sequence[str]) -> None:
        self.text = text
        self.order = {name: i for i, name in enumerate(order)}
        self.details: list[dict[str, Any]] = []
        self.syntax: tuple[int, str] | None = None

    def json_error(self, what: str, at: int) -> None:
        if self.syntax is None or at < self.syntax[0]:
            self.syntax = (at, what)

    def add(self, errors: Sequence[Any], prefix: TensorPath) -> None:
        self.details.extend(pydantic_details(errors, prefix))

    def mark(self) -> tuple[int, tuple[int, str] | None]:
        return len(self.details), self.syntax

    def since(self, mark: tuple[int, tuple[int, str] | None]) -> bool:
        """Whether an error was found since ``mark``."""
        return len(self.details) > mark[0] or self.syntax != mark[1]

    @property
    def full(self) -> bool:
        return len(self.details) >= MAX_ERRORS

    def raise_any(self) -> None:
        if self.syntax is not None:
            raise _json_error(self.syntax[1], self.text, self.syntax[0])
        if self.details:
            self.details.sort(key=self._rank)  # stable: as pydantic lists them, by field
            raise RequestInvalid(self.details[:MAX_ERRORS])

    def _rank(self, detail: Mapping[str, Any]) -> tuple[int, int]:
        loc = detail["loc"]  # ["body", field, index...]
        if len(loc) < 2:
            return -1, -1
        index = loc[2] if len(loc) > 2 and isinstance(loc[2], int) else -1
        return self.order.get(loc[1], len(self.order)), index


def _errors_of(exc: ValidationError) -> list[Any]:
    return exc.errors(include_url=False, include_input=False, include_context=False)


def _syntax(exc: Exception) -> tuple[str, int, int] | None:
    """(what, line, column) of a JSON syntax error (jiter's message), else None."""
    if isinstance(exc, ValidationError):
        errors = _errors_of(exc)
        if not errors or errors[0]["type"] != "json_invalid":
            return None
        message = str(errors[0]["msg"]).removeprefix("Invalid JSON: ")
    else:
        message = str(exc)
    match = _AT.match(message)
    return (
        (message, 1, 1) if match is None else (match["what"], int(match["line"]), int(match["col"]))
    )


def _check_syntax(buf: U8, pieces: Iterator[_Piece], errors: _Errors) -> None:
    """After a validation error the remaining pieces are only parsed: a syntax error wins."""
    for piece in pieces:
        text, head = piece.text(buf)
        try:
            pydantic_core.from_json(text)
        except ValueError as exc:
            what, line, col = _syntax(exc) or ("invalid JSON", 1, 1)
            errors.json_error(what, piece.at(_offset(text, line, col) - head))
            return


#: The union member a discriminator picks from an array's first byte, by field.
def _form(name: str, first: int) -> str:
    if name in ("class_names", "tokens") or (name in ("labels", "ids") and first == _Q):
        return "strings"
    if name == "ids":
        return "integers"
    if first == _LSQ and name in ("predictions", "labels"):
        return "matrix"
    return "vector"


@cache
def _form_adapter(form: str) -> TypeAdapter[Any]:
    from service.schemas.tensors import Integers, Matrix, Strings, Vector

    tp = {"vector": Vector, "matrix": Matrix, "strings": Strings, "integers": Integers}[form]
    return TypeAdapter(tp, config=ConfigDict(strict=True, allow_inf_nan=False))


@cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """The validator of field ``name`` of ``model`` (its union, with its discriminator)."""
    info = model.model_fields[name]
    tp: Any = info.annotation
    if info.metadata:
        tp = Annotated[tp, *info.metadata]
    return TypeAdapter(tp, config=ConfigDict(strict=True, allow_inf_nan=False))


@cache
def _list_adapter(item: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(list[item])  # type: ignore[valid-type]


def _validate_pieces(
    buf: U8,
    pieces: Sequence[_Piece],
    adapters: Callable[[int], TypeAdapter[Any]],
    path: TensorPath,
    errors: _Errors,
    *,
    stop: bool,
) -> Iterator[tuple[_Piece, list[Any]]]:
    """Each piece with its validated members; errors go to ``errors`` (``stop``: at the first
    piece with one, as a fail-fast list does), then the rest is only parsed."""
    rest = iter(enumerate(pieces))
    failed = False
    for i, piece in rest:
        if piece.b - piece.a > MAX_PIECE:
            raise too_large(
                f"{_path_text((*path, piece.member))} is over {MAX_PIECE} bytes of JSON: "
                "no number, id or token is that long"
            )
        text, head = piece.text(buf)
        try:
            members = adapters(i).validate_json(text, strict=True)
        except ValidationError as exc:
            syntax = _syntax(exc)
            if syntax is not None:
                errors.json_error(syntax[0], piece.at(_offset(text, *syntax[1:]) - head))
                _check_syntax(buf, (p for _, p in rest), errors)
                return
            found = _python_errors(adapters(i), text) or _errors_of(exc)
            errors.add([{**e, "loc": piece.loc(e["loc"])} for e in found], path)
            failed = True
            if stop or errors.full:
                _check_syntax(buf, (p for _, p in rest), errors)
                return
            continue
        if not failed:
            yield piece, members


def _python_errors(adapter: TypeAdapter[Any], text: bytes) -> list[Any]:
    """The errors of ``text`` as the whole-body path words them: parsed, then validated as
    Python objects ("a valid list", not "a valid array")."""
    try:
        adapter.validate_python(pydantic_core.from_json(text, allow_inf_nan=True), strict=True)
    except ValidationError as exc:
        return _errors_of(exc)
    return []


def _path_text(path: TensorPath) -> str:
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text


@dataclass
class _Array:
    """An array field read in pieces: numbers as one float64 array, or its values."""

    values: Any
    n: int


def _read_array(
    buf: U8,
    model: type[BaseModel],
    name: str,
    f: _Field,
    path: TensorPath,
    errors: _Errors,
    *,
    keep: bool = True,
) -> _Array | None:
    """The array value of field ``f`` validated piece by piece with the field's own type (the
    first piece with its union, so the discriminator sees the same first member)."""
    mark = errors.mark()
    last = prev_byte(buf, f.end - 1)
    if not f.nonempty:
        got = _small_value(buf, f.start, last + 1, _field_adapter(model, name), path, errors)
        return None if got is None else _Array(got if keep else None, 0)
    form = _form(name, int(buf[next_byte(buf, f.start + 1)]))
    first, rest = _field_adapter(model, name), _form_adapter(form)
    numeric = form in ("vector", "matrix") and keep
    k = f.width if form == "matrix" and keep else 1
    flat = np.empty(f.n_members * k, np.float64) if numeric else None
    values: list[Any] = []
    written = 0
    pieces = _pieces(f, last)
    for piece, members in _validate_pieces(
        buf, pieces, lambda i: first if i == 0 else rest, path, errors, stop=True
    ):
        if flat is not None:
            if form == "vector" or not (piece.element or piece.ends_in_row):
                chunk = np.array(members, np.float64).ravel()  # whole rows: C speed
            else:
                chunk = np.fromiter(itertools.chain.from_iterable(members), np.float64)
            start = piece.member * k + piece.element
            if start != written or start + chunk.size > flat.size:
                raise RequestInvalid(  # the rows are not what the scan saw: say where
                    [error_item((*path, piece.member), _RAGGED, "value_error")]
                )
            flat[start : start + chunk.size] = chunk
            written += chunk.size
        elif keep:
            values.extend(members)
    if errors.since(mark):
        return None
    if flat is not None:
        return _Array(flat.reshape(f.n_members, k) if form == "matrix" else flat, f.n_members)
    return _Array(values if keep else None, f.n_members)


_RAGGED = "ragged rows: every row must have the same length"


def _small_value(
    buf: U8, a: int, b: int, adapter: TypeAdapter[Any], path: TensorPath, errors: _Errors
) -> Any:
    text = buf[a:b].tobytes()
    try:
        return adapter.validate_json(text, strict=True)
    except ValidationError as exc:
        syntax = _syntax(exc)
        if syntax is not None:
            errors.json_error(syntax[0], a + _offset(text, *syntax[1:]))
        else:
            errors.add(_python_errors(adapter, text) or _errors_of(exc), path)
        return None


# --- the rest of a scanned object: everything but its arrays, validated by its model ---------


@dataclass
class _Rest:
    """An object's JSON with some values replaced (``buf[a:b]`` -> ``text``), and back."""

    buf: U8
    start: int
    end: int
    swaps: list[tuple[int, int, bytes]] = field(default_factory=list)

    def text(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The JSON, and (offset in it, body byte) where each copied run starts."""
        out: list[bytes] = []
        runs: list[tuple[int, int]] = []
        at = self.start
        for a, b, new in sorted(self.swaps):
            runs.append((sum(map(len, out)), at))
            out.append(self.buf[at:a].tobytes())
            out.append(new)
            at = b
        runs.append((sum(map(len, out)), at))
        out.append(self.buf[at : self.end].tobytes())
        return b"".join(out), runs

    def size(self) -> int:
        return self.end - self.start - sum(b - a - len(new) for a, b, new in self.swaps)


def _body_pos(runs: Sequence[tuple[int, int]], offset: int) -> int:
    i = max(j for j, (o, _) in enumerate(runs) if o <= offset) if offset >= 0 else 0
    return runs[i][1] + offset - runs[i][0]


def _load_rest(rest: _Rest, errors: _Errors) -> dict[str, Any] | None:
    text, runs = rest.text()
    try:
        raw = pydantic_core.from_json(text, allow_inf_nan=True)
    except ValueError as exc:
        what, line, col = _syntax(exc) or ("invalid JSON", 1, 1)
        errors.json_error(what, _body_pos(runs, _offset(text, line, col)))
        return None
    assert isinstance(raw, dict)  # the scan saw an object
    return raw


def _value_end(buf: U8, f: _Field) -> int:
    return prev_byte(buf, f.end - 1) + 1


def _keys(buf: U8, fields: Sequence[_Field]) -> list[str | None]:
    """Each field's key (None: not a string the parser reads, or absurdly long)."""
    out: list[str | None] = []
    for f in fields:
        text = buf[f.key : f.colon].tobytes().strip()
        try:
            key = pydantic_core.from_json(text) if len(text) <= 1024 else None
        except ValueError:
            key = None
        out.append(key if isinstance(key, str) else None)
    return out


def _by_key(buf: U8, outline: _Outline) -> dict[str, _Field]:
    """The fields by key; of equal keys the last wins, as the parser has it."""
    out: dict[str, _Field] = {}
    for key, f in zip(_keys(buf, outline.fields), outline.fields, strict=True):
        if key is not None:
            out[key] = f
    return out


def _malformed(exc: _Malformed, text: bytes | bytearray) -> RequestInvalid:
    if exc.what == "expected an object":
        return RequestInvalid([error_item((), "expected a JSON object", "model_type")])
    if exc.what == "too many fields":
        return RequestInvalid(
            [error_item((), f"more than {MAX_FIELDS} fields in one object", "value_error")]
        )
    return _json_error(exc.what, text, exc.pos)


@dataclass
class _Scanned:
    """What the scanned path hands on: the request, the remainder's raw JSON (tensor
    references, in order), the arrays kept apart, and the counts."""

    request: BaseModel
    raw: dict[str, Any]
    tensors: dict[TensorPath, npt.NDArray[Any]]
    openai: dict[int, OpenAITokens]
    items: int
    elements: int


def _scan(text: bytes | bytearray, model: type[BaseModel], settings: Settings) -> _Scanned:
    """The scanned path (see the module docstring)."""
    buf = np.frombuffer(text, np.uint8)
    if buf.size and buf[next_byte(buf, 0)] != _LCU:
        _load(text)  # not an object: the parser's own message (a scalar or a list)
    try:
        outline = _outline(buf, 0, buf.size, root=True)
    except _Malformed as exc:
        raise _malformed(exc, text) from None
    fields = _by_key(buf, outline)
    if issubclass(model, SequencesRequest):
        return _scan_sequences(text, buf, outline, fields, settings)
    return _scan_batch(text, buf, outline, fields, model, settings)


def _rest_of(
    buf: U8,
    outline: _Outline,
    fields: Mapping[str, _Field],
    model: type[BaseModel],
    arrays: set[str],
) -> _Rest:
    """The object with the values of ``arrays`` replaced by ``[]`` and those of unknown keys
    by ``0`` (refused by name: their values need no reading)."""
    rest = _Rest(buf, outline.start, outline.end)
    known = set(model.model_fields)
    for f, key in zip(outline.fields, _keys(buf, outline.fields), strict=True):
        if key in arrays and fields.get(key) is f:
            rest.swaps.append((f.start, _value_end(buf, f), b"[]"))
        elif key not in known and _value_end(buf, f) - f.start > MAX_REST // 16:
            rest.swaps.append((f.start, _value_end(buf, f), b"0"))  # refused by its name
    if rest.size() > MAX_REST:
        raise too_large(
            f"the request has {rest.size()} bytes of JSON outside its arrays, "
            f"at most {MAX_REST} are read"
        )
    return rest


def _scan_batch(
    text: bytes | bytearray,
    buf: U8,
    outline: _Outline,
    fields: dict[str, _Field],
    model: type[BaseModel],
    settings: Settings,
) -> _Scanned:
    arrays = {k for k, f in fields.items() if k in _PIECEWISE and f.kind == _LSQ}
    items = max((fields[k].n_members for k in _ITEM_ARRAYS if k in arrays), default=0)
    _check_counts(items, outline.elements, settings)
    rows: dict[str, dict[str, Any]] = {}
    for name in ("predictions", "labels"):
        problem = _rows(buf, name, fields[name]) if name in arrays else None
        if problem is not None:
            rows[name] = problem
    errors = _Errors(text, list(model.model_fields))
    raw = _load_rest(_rest_of(buf, outline, fields, model, arrays), errors)
    request: BaseModel | None = None
    if raw is not None:
        try:
            request = model.model_validate(raw)
        except ValidationError as exc:
            errors.details.extend(_details(model, raw, exc))
    surplus = _surplus_names(fields, request)
    got: dict[str, _Array] = {}
    for name in sorted(arrays, key=lambda k: fields[k].start):
        problem = rows.get(name)
        if problem is not None and problem["msg"] != _RAGGED:  # another rank: it says it all
            errors.details.append(problem)
            continue
        keep = problem is None and not (name == "class_names" and surplus)  # else: validated
        array = _read_array(buf, model, name, fields[name], (name,), errors, keep=keep)
        if array is not None:
            got[name] = array
    errors.raise_any()
    if "predictions" in rows:  # ragged: xentcore's first check, once the fields are valid
        raise RequestInvalid([rows["predictions"]])
    assert request is not None and raw is not None
    tensors: dict[TensorPath, npt.NDArray[Any]] = {}
    update: dict[str, Any] = {}
    if "labels" in rows:  # ragged labels: refused by xentcore in its own order
        got["labels"] = _Array(_ragged_stand_in(fields["labels"]), fields["labels"].n_members)
    if surplus:  # more names than classes: xentcore says so, in its order, from their count
        got["class_names"] = _Array([""] * surplus, surplus)
    for name, array in got.items():
        if isinstance(array.values, np.ndarray):
            tensors[(name,)] = array.values
        else:
            update[name] = array.values
    if update:
        request = request.model_copy(update=update)
    return _Scanned(request, raw, tensors, {}, items, outline.elements)


def _surplus_names(fields: Mapping[str, _Field], request: BaseModel | None) -> int:
    """The number of ``class_names`` when it is more than the classes of any task
    ``predictions`` allow (2, or K): they are then validated, not kept (0 otherwise)."""
    names, pred = fields.get("class_names"), fields.get("predictions")
    if names is None or names.kind != _LSQ:
        return 0
    if pred is not None and pred.kind == _LSQ:
        classes = pred.width if pred.first_array == 0 else 2
    elif isinstance(value := getattr(request, "predictions", None), TensorRef):
        classes = value.shape[-1] if len(value.shape) == 2 else 2
    else:
        return 0
    return names.n_members if names.n_members > max(classes, 2) else 0


def _ragged_stand_in(f: _Field) -> list[list[float]]:
    """Rows shaped like ragged ``f`` up to its first ragged row (one shared row: 8 bytes per
    row), for xentcore to refuse where and when it would refuse the real ones."""
    row, other = [0.0] * f.width, [0.0] * (f.width + 1)
    rows = [row] * f.n_members
    rows[f.first_ragged()] = other
    return rows


def _rows(buf: U8, name: str, f: _Field) -> dict[str, Any] | None:
    """What is wrong with the rows of ``predictions`` / ``labels`` as the scan sees them
    (their values unread): unequal lengths, or (``predictions``) nested deeper than N x K."""
    if f.first_array != 0:
        return None
    if name == "predictions" and f.first_deep >= 0:
        shape = _shape(buf, f.start, _value_end(buf, f))
        if len(shape) > 2:
            return _rank_error(shape, (name,))
    if f.first_scalar < 0 and f.first_object < 0 and f.first_deep < 0:
        row = f.first_ragged()
        if row >= 0:
            return error_item((name, row), _RAGGED, "value_error")
    return None


def _shape(buf: U8, a: int, b: int) -> tuple[int, ...]:
    """The shape of the nested lists ``buf[a:b]`` along their first elements (as
    ``_rank_of`` measures it), read in place however large they are."""
    if b - a <= SCAN_FROM:
        return _dims(pydantic_core.from_json(buf[a:b].tobytes()))
    wrapped = np.frombuffer(b'{"x":' + buf[a:b].tobytes() + b"}", np.uint8)
    f = _outline(wrapped, 0, wrapped.size, root=False).fields[0]
    if f.first_array != 0:
        return (f.n_members,)
    end = f.sep0_pos if f.sep0_pos >= 0 else prev_byte(wrapped, f.end - 1)
    return (f.n_members, *_shape(wrapped, next_byte(wrapped, f.start + 1), end))


def _sub_outline(buf: U8, a: int, b: int, errors: _Errors) -> _Outline | None:
    """The outline of the object ``buf[a:b]`` inside a body (its own faults: a JSON error)."""
    try:
        return _outline(buf, a, b, root=False)
    except _Malformed as exc:
        errors.json_error(exc.what, exc.pos)
        return None


# --- sequences --------------------------------------------------------------------------------


def _compact(i: int, seq: SequenceIn, openai: dict[int, OpenAITokens]) -> None:
    """Keep an OpenAI ``logprobs.content`` as arrays, not as a model per token."""
    if seq.logprobs is not None and i not in openai:
        openai[i] = OpenAITokens.of(seq.logprobs.content)
        seq.logprobs = OpenAILogprobs.model_construct(content=[])


def _scan_sequences(
    text: bytes | bytearray,
    buf: U8,
    outline: _Outline,
    fields: dict[str, _Field],
    settings: Settings,
) -> _Scanned:
    f = fields.get("sequences")
    arrays = {"sequences"} if f is not None and f.kind == _LSQ else set()
    items = f.n_members if arrays and f is not None else 0
    _check_counts(items, outline.elements, settings)
    errors = _Errors(text, list(SequencesRequest.model_fields))
    raw = _load_rest(_rest_of(buf, outline, fields, SequencesRequest, arrays), errors)
    request: SequencesRequest | None = None
    if raw is not None:
        try:
            request = SequencesRequest.model_validate(raw)
        except ValidationError as exc:
            errors.details.extend(_details(SequencesRequest, raw, exc))
    tensors: dict[TensorPath, npt.NDArray[Any]] = {}
    openai: dict[int, OpenAITokens] = {}
    seqs: list[SequenceIn] = []
    if arrays and f is not None:
        seqs = _read_sequences(buf, f, tensors, openai, errors)
    errors.raise_any()
    assert request is not None and raw is not None
    if arrays:
        request = request.model_copy(update={"sequences": seqs})
    return _Scanned(request, raw, tensors, openai, items, outline.elements)


def _read_sequences(
    buf: U8,
    f: _Field,
    tensors: dict[TensorPath, npt.NDArray[Any]],
    openai: dict[int, OpenAITokens],
    errors: _Errors,
) -> list[SequenceIn]:
    """``sequences`` a few at a time; a long one (``BIG`` bytes) by its own arrays."""
    last = prev_byte(buf, f.end - 1)
    if not f.nonempty:
        return []
    big = [(m, next_byte(buf, s), prev_byte(buf, e - 1) + 1) for m, s, e in f.big]
    big_at = {m: (s, e) for m, s, e in big}
    pieces = _pieces(f, last, [(m, s, e) for m, s, e in f.big])
    out: dict[int, SequenceIn] = {}
    adapter = _list_adapter(SequenceIn)
    done = iter(
        _validate_pieces(buf, pieces, lambda _: adapter, ("sequences",), errors, stop=False)
    )
    pending = sorted(big_at)
    for piece, members in done:
        while pending and pending[0] < piece.member:
            _one_big(buf, pending.pop(0), big_at, tensors, openai, errors, out)
        for j, seq in enumerate(members):
            _compact(piece.member + j, seq, openai)
            _keep_apart(piece.member + j, seq, tensors)
            out[piece.member + j] = seq
    for m in pending:
        _one_big(buf, m, big_at, tensors, openai, errors, out)
    return [out[i] for i in sorted(out)]


def _keep_apart(i: int, seq: SequenceIn, tensors: dict[TensorPath, npt.NDArray[Any]]) -> None:
    """A JSON ``token_logprobs`` list as an array; ``tokens`` (checked, never used) dropped."""
    path: TensorPath = ("sequences", i, "token_logprobs")
    if isinstance(seq.token_logprobs, list):
        if path not in tensors:
            tensors[path] = np.array(seq.token_logprobs, np.float64)
        seq.token_logprobs = []
    seq.tokens = None


def _one_big(
    buf: U8,
    m: int,
    big_at: Mapping[int, tuple[int, int]],
    tensors: dict[TensorPath, npt.NDArray[Any]],
    openai: dict[int, OpenAITokens],
    errors: _Errors,
    out: dict[int, SequenceIn],
) -> None:
    seq = _read_sequence(buf, m, *big_at[m], tensors, openai, errors)
    if seq is not None:
        out[m] = seq


def _read_sequence(
    buf: U8,
    m: int,
    a: int,
    b: int,
    tensors: dict[TensorPath, npt.NDArray[Any]],
    openai: dict[int, OpenAITokens],
    errors: _Errors,
) -> SequenceIn | None:
    """One long sequence: its arrays in pieces, the rest of it by the model."""
    path: TensorPath = ("sequences", m)
    if buf[a] != _LCU:
        value = _small_value(buf, a, b, TypeAdapter(SequenceIn), path, errors)
        return value if isinstance(value, SequenceIn) else None
    outline = _sub_outline(buf, a, b, errors)
    if outline is None:
        return None
    fields = _by_key(buf, outline)
    rest = _Rest(buf, outline.start, outline.end)
    arrays = {k for k in ("token_logprobs", "tokens") if k in fields and fields[k].kind == _LSQ}
    got: dict[str, _Array] = {}
    for name in sorted(arrays, key=lambda k: fields[k].start):
        fk = fields[name]
        rest.swaps.append((fk.start, _value_end(buf, fk), b"[]"))
        array = _read_array(
            buf, SequenceIn, name, fk, (*path, name), errors, keep=name == "token_logprobs"
        )
        if array is not None:
            got[name] = array
    tokens: OpenAITokens | None = None
    lp = fields.get("logprobs")
    if lp is not None and lp.kind == _LCU:
        tokens = _read_content(buf, lp, (*path, "logprobs"), rest, errors)
    if rest.size() > MAX_REST:
        raise too_large(f"{_path_text(path)} has over {MAX_REST} bytes of JSON outside its arrays")
    raw = _load_rest(rest, errors)
    if raw is None:
        return None
    try:
        seq = SequenceIn.model_validate(raw)
    except ValidationError as exc:
        errors.add(_errors_of(exc), path)
        return None
    if "tokens" in got and "token_logprobs" in got:
        problem = tokens_mismatch(got["tokens"].n, got["token_logprobs"].n)
        if problem is not None:
            errors.add([{"loc": (), "msg": f"Value error, {problem}", "type": "value_error"}], path)
            return None
    if "token_logprobs" in got:
        tensors[(*path, "token_logprobs")] = np.asarray(got["token_logprobs"].values, np.float64)
    if tokens is not None:
        openai[m] = tokens
    _compact(m, seq, openai)
    _keep_apart(m, seq, tensors)
    return seq


def _read_content(
    buf: U8, lp: _Field, path: TensorPath, rest: _Rest, errors: _Errors
) -> OpenAITokens | None:
    """``logprobs.content`` of a long sequence in pieces, kept as arrays; ``rest`` gets the
    ``logprobs`` object with ``content: []``."""
    outline = _sub_outline(buf, lp.start, _value_end(buf, lp), errors)
    if outline is None:
        return None
    f = _by_key(buf, outline).get("content")
    if f is None or f.kind != _LSQ:
        return None
    rest.swaps.append((f.start, _value_end(buf, f), b"[]"))
    last = prev_byte(buf, f.end - 1)
    if not f.nonempty:
        return OpenAITokens.join([])
    adapter = _list_adapter(OpenAIToken)
    mark = errors.mark()
    parts = [
        OpenAITokens.of(members)
        for _, members in _validate_pieces(
            buf, _pieces(f, last), lambda _: adapter, (*path, "content"), errors, stop=False
        )
    ]
    return None if errors.since(mark) else OpenAITokens.join(parts)


# --- binary tensors -----------------------------------------------------------------------------


def _batch_refs(raw: dict[str, Any], req: BaseModel) -> Iterator[tuple[TensorPath, TensorRef]]:
    """Tensor fields of a batch in the order they appear in the JSON."""
    for name in raw:
        value = getattr(req, name, None) if name in BATCH_ARRAYS else None
        if isinstance(value, TensorRef):
            yield (name,), value


def _sequence_refs(raw: dict[str, Any], req: BaseModel) -> Iterator[tuple[TensorPath, TensorRef]]:
    assert isinstance(req, SequencesRequest)
    for i, seq in enumerate(req.sequences):
        if isinstance(seq.token_logprobs, TensorRef):
            yield ("sequences", i, "token_logprobs"), seq.token_logprobs


RefWalker = Callable[[dict[str, Any], BaseModel], Iterator[tuple[TensorPath, TensorRef]]]


def _check_shape(path: TensorPath, ref: TensorRef, settings: Settings) -> None:
    """A declared shape numpy can hold: no dimension over ``XENT_MAX_ELEMENTS`` (a zero
    elsewhere would make its product small, not the array representable)."""
    for i, dim in enumerate(ref.shape):
        if dim > settings.max_elements:
            raise RequestInvalid(
                [
                    error_item(
                        (*path, "shape", i),
                        f"dimension {dim} is over XENT_MAX_ELEMENTS = {settings.max_elements}",
                        "value_error",
                    )
                ]
            )


def _read_tensors(
    refs: list[tuple[TensorPath, TensorRef]],
    data: memoryview,
    *,
    items_path: TensorPath | None,
    counts: tuple[int, int],
    settings: Settings,
) -> dict[TensorPath, npt.NDArray[Any]]:
    """Check every declared tensor (shapes, sizes, the limits with the JSON's own counts),
    then view the bytes as arrays."""
    items, elements = counts
    for path, ref in refs:
        _check_shape(path, ref, settings)
        count = math.prod(ref.shape)
        itemsize = np.dtype(TENSOR_DTYPES[ref.datatype]).itemsize
        if ref.binary_data_size != count * itemsize:
            raise RequestInvalid(
                [
                    error_item(
                        (*path, "binary_data_size"),
                        f"{ref.binary_data_size} bytes do not hold "
                        f"{ref.datatype} of shape {ref.shape} ({count * itemsize} bytes)",
                        "value_error",
                    )
                ]
            )
        if path == items_path:
            items = max(items, ref.shape[0])
        elements += count
    _check_counts(items, elements, settings)
    declared = sum(ref.binary_data_size for _, ref in refs)
    if declared != len(data):
        raise RequestInvalid(
            [
                error_item(
                    (),
                    f"the body has {len(data)} bytes of binary data, "
                    f"the tensors declare {declared}",
                    "value_error",
                )
            ]
        )
    out: dict[TensorPath, npt.NDArray[Any]] = {}
    offset = 0
    for path, ref in refs:
        arr = np.frombuffer(
            data, dtype=TENSOR_DTYPES[ref.datatype], count=math.prod(ref.shape), offset=offset
        ).reshape(ref.shape)
        offset += ref.binary_data_size
        # An unaligned view is legal but slow for every kernel: realign once.
        out[path] = arr if arr.flags.aligned else arr.copy()
    return out


def _reject_refs(refs: list[tuple[TensorPath, TensorRef]]) -> None:
    if refs:
        raise RequestInvalid(
            [
                error_item(
                    refs[0][0],
                    "a binary tensor needs the header Inference-Header-Content-Length",
                    "value_error",
                )
            ]
        )


# --- the entry points -----------------------------------------------------------------------


def _could_exceed(size: int, settings: Settings) -> bool:
    """Whether ``size`` bytes of JSON could hold more items or elements than allowed (each
    takes at least 2 bytes: a digit or "[]"... and a comma)."""
    return size // 2 > min(settings.max_items, settings.max_elements)


def parse_body(
    body: bytes | bytearray | memoryview,
    model: type[M],
    *,
    header_length: int | None,
    settings: Settings,
    counts: Callable[[dict[str, Any]], tuple[int, int]],
    walker: RefWalker,
    items_path: TensorPath | None,
    loads: Callable[[bytes | bytearray], dict[str, Any]] | None = None,
) -> Parsed[M]:
    """Parse, size-check and validate a request body (JSON, or JSON + binary tensors).

    ``loads`` parses a JSON part under ``SCAN_FROM`` in place of pydantic-core's parser (the
    fast lane's orjson, which refuses what it does not read as pydantic-core would)."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise RequestInvalid(
            [
                error_item(
                    (),
                    f"Inference-Header-Content-Length {header_length} "
                    f"is outside the body of {len(body)} bytes",
                    "value_error",
                )
            ]
        )
    if header_length is not None:
        json_part: bytes | bytearray = bytes(body[:header_length])
    else:
        json_part = bytes(body) if isinstance(body, memoryview) else body
    tensors: dict[TensorPath, npt.NDArray[Any]] = {}
    openai: dict[int, OpenAITokens] = {}
    if len(json_part) >= SCAN_FROM:
        scanned = _scan(json_part, model, settings)
        req, raw = scanned.request, scanned.raw
        tensors, openai = scanned.tensors, scanned.openai
        json_counts = (scanned.items, scanned.elements)
    else:
        raw = (loads or _load)(json_part)
        exact = header_length is not None or _could_exceed(len(json_part), settings)
        json_counts = counts(raw) if exact else (0, 0)
        _check_counts(*json_counts, settings)
        if header_length is None and issubclass(model, BatchRequest):
            raw, tensors = _plain_arrays(raw)
        req = _plain_model(model, raw, tensors) or _validate(model, raw)
    refs = list(walker(raw, req))
    del raw
    if isinstance(req, SequencesRequest):
        for i, seq in enumerate(req.sequences):
            _compact(i, seq, openai)
    assert isinstance(req, model)
    if header_length is None:
        _reject_refs(refs)
        return Parsed(req, tensors, openai, len(body))
    data = memoryview(body)[header_length:]
    tensors |= _read_tensors(
        refs, data, items_path=items_path, counts=json_counts, settings=settings
    )
    return Parsed(req, tensors, openai, len(body))


def parse_batch(
    body: bytes | bytearray | memoryview,
    model: type[M],
    *,
    header_length: int | None,
    settings: Settings,
    loads: Callable[[bytes | bytearray], dict[str, Any]] | None = None,
) -> Parsed[M]:
    """A batch request (``BatchRequest`` or a subclass)."""
    assert issubclass(model, BatchRequest)
    return parse_body(
        body,
        model,
        header_length=header_length,
        settings=settings,
        counts=_batch_counts,
        walker=_batch_refs,
        items_path=("predictions",),
        loads=loads,
    )


def parse_sequences(
    body: bytes | bytearray | memoryview, *, header_length: int | None, settings: Settings
) -> Parsed[SequencesRequest]:
    """A ``SequencesRequest``; every token (and OpenAI ``top_logprobs`` entry) counts against
    ``max_elements``."""
    return parse_body(
        body,
        SequencesRequest,
        header_length=header_length,
        settings=settings,
        counts=_sequence_counts,
        walker=_sequence_refs,
        items_path=("sequences",),
    )
