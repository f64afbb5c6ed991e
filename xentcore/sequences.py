"""Token log-prob scoring of generated sequences (LLM outputs).

Per sequence of n tokens with log-probs l_1..l_n (natural log, <= 0):
    mean_logprob = sum_j l_j / n,  nll = -mean_logprob,  perplexity = exp(nll),
    confidence = exp(mean_logprob)  (the geometric-mean token probability),
    min_token_logprob = min_j l_j at min_token_index (the first one on ties).
Batch: nll = -sum of all log-probs / total tokens (token-weighted), perplexity = exp(nll).

Ragged sequences are concatenated once and reduced by segment (``np.add.reduceat``), with no
Python loop per token. A perplexity beyond float64's range (nll > 709.78) is reported as the
largest float64, with a warning: no infinity ever leaves the core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError
from xentcore.types import SEQUENCE_REASONS

__all__ = ["CENSORED_LOGPROB", "SequenceResult", "openai_logprobs", "score_sequences"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

#: OpenAI's log-prob for a token outside the top 20: a censored value, never a real one.
CENSORED_LOGPROB = -9999.0
_MAX_LOG = float(np.log(np.finfo(np.float64).max))
_FLOAT_MAX = float(np.finfo(np.float64).max)


@dataclass
class SequenceResult:
    """Per-sequence arrays (length S) and the batch's token-weighted figures."""

    n_tokens: I64
    mean_logprob: F64
    nll: F64
    perplexity: F64
    confidence: F64
    min_token_logprob: F64
    min_token_index: I64
    low_confidence: Bool
    low_token_probability: Bool
    risk_policy: Bool
    batch_nll: float
    batch_perplexity: float
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def flagged(self) -> Bool:
        """Whether each sequence is flagged by any rule."""
        return self.low_confidence | self.low_token_probability | self.risk_policy

    @cached_property
    def flagged_indices(self) -> npt.NDArray[np.intp]:
        """Indices of the flagged sequences, ascending."""
        return np.flatnonzero(self.flagged)

    def counts(self) -> dict[str, int]:
        """Number of sequences each reason fires for (``SEQUENCE_REASONS``)."""
        return {name: int(np.count_nonzero(getattr(self, name))) for name in SEQUENCE_REASONS}

    @cached_property
    def reasons(self) -> list[list[str]]:
        """Reasons per sequence, in the order of ``SEQUENCE_REASONS``."""
        columns = [getattr(self, name).tolist() for name in SEQUENCE_REASONS]
        return [
            [name for name, on in zip(SEQUENCE_REASONS, row, strict=True) if on]
            for row in zip(*columns, strict=True)
        ]


def _check_rule(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not 0 <= float(value) <= 1
    ):
        raise InputError(("flag", name), f"expected a number in [0, 1], got {value!r}")
    return float(value)


def _check_sequence(i: int, seq: Any) -> F64:
    loc = ("sequences", i, "token_logprobs")
    try:
        arr = np.asarray(seq, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(loc, "expected a list of numbers", kind="float_type") from None
    if arr.ndim != 1:
        raise InputError(loc, f"expected a 1-D list of log-probs, got shape {list(arr.shape)}")
    if arr.size == 0:
        raise InputError(loc, "empty sequence: at least one token log-prob is required")
    return arr


def _concat(token_logprobs: Sequence[Any]) -> tuple[F64, I64]:
    """All log-probs in one array, and each sequence's length; every value checked."""
    if isinstance(token_logprobs, np.ndarray) and token_logprobs.ndim == 2:
        token_logprobs = list(token_logprobs)
    if not isinstance(token_logprobs, Sequence) or isinstance(token_logprobs, str):
        raise InputError(("sequences",), "expected a list of sequences")
    if len(token_logprobs) == 0:
        raise InputError(("sequences",), "empty batch: at least one sequence is required")
    arrays = [_check_sequence(i, s) for i, s in enumerate(token_logprobs)]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays)
    bad = ~np.isfinite(flat) | (flat > 0)
    if bad.any():
        j = int(np.argmax(bad))
        seq = int(np.searchsorted(np.cumsum(lengths), j, side="right"))
        pos = j - int(lengths[:seq].sum())
        what = (
            "is not a finite number" if not np.isfinite(flat[j]) else "is positive, expected <= 0"
        )
        raise InputError(
            ("sequences", seq, "token_logprobs", pos),
            f"log-prob {flat[j]} {what}",
            kind="finite_number" if not np.isfinite(flat[j]) else "value_error",
        )
    return flat, lengths


def _segment_argmin(flat: F64, starts: I64, mins: F64, lengths: I64) -> I64:
    """Index within each segment of its first minimum, vectorized."""
    positions = np.arange(flat.size, dtype=np.int64)
    candidates = np.where(flat == np.repeat(mins, lengths), positions, flat.size)
    return np.minimum.reduceat(candidates, starts) - starts


def _perplexity(nll: F64, warnings: list[str], what: str) -> F64:
    over = nll > _MAX_LOG
    if over.any():
        warnings.append(f"{what}: perplexity beyond float64 range, reported as {_FLOAT_MAX:.6g}")
    return np.where(over, _FLOAT_MAX, np.exp(np.minimum(nll, _MAX_LOG)))


def score_sequences(
    token_logprobs: Sequence[Any],
    *,
    min_confidence: float | None = 0.5,
    min_token_probability: float | None = None,
    positions: Sequence[I64 | None] | None = None,
    risk_threshold: float | None = None,
) -> SequenceResult:
    """Score each sequence of token log-probs; ``None`` turns a flag rule off.

    ``positions`` (optional, one entry per sequence) maps each given log-prob to its token's
    index in the original sequence, for sequences some tokens were left out of (see
    :func:`openai_logprobs`): ``min_token_index`` is then reported in the original numbering.

    Flags: ``low_confidence`` when exp(mean_logprob) < ``min_confidence``;
    ``low_token_probability`` when exp(min_token_logprob) < ``min_token_probability``;
    ``risk_policy`` unless the confidence >= ``risk_threshold`` (a risk policy's threshold,
    API.md section 10; ``inf`` accepts nothing).

    >>> import xentcore as xc
    >>> s = xc.score_sequences([[-0.1, -0.2, -2.0], [-0.05]], min_token_probability=0.2)
    >>> s.n_tokens.tolist(), s.perplexity.round(4).tolist(), s.min_token_index.tolist()
    ([3, 1], [2.1526, 1.0513], [2, 0])
    >>> s.reasons
    [['low_confidence', 'low_token_probability'], []]
    """
    min_conf = _check_rule(min_confidence, "min_confidence")
    min_tok = _check_rule(min_token_probability, "min_token_probability")
    flat, lengths = _concat(token_logprobs)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    sums = np.add.reduceat(flat, starts)
    mins = np.minimum.reduceat(flat, starts)
    mean = sums / lengths
    warnings: list[str] = []
    nll = -mean
    batch_nll = float(-flat.sum() / flat.size)
    perplexity = _perplexity(nll, warnings, "sequences")
    confidence = np.exp(mean)
    off = np.zeros(lengths.size, dtype=bool)
    min_index = _segment_argmin(flat, starts, mins, lengths)
    for i, pos in enumerate(positions or ()):  # only sequences with left-out tokens carry one
        if pos is not None:
            min_index[i] = pos[min_index[i]]
    return SequenceResult(
        n_tokens=lengths,
        mean_logprob=mean,
        nll=nll + 0.0,
        perplexity=perplexity,
        confidence=confidence,
        min_token_logprob=mins,
        min_token_index=min_index,
        low_confidence=confidence < min_conf if min_conf is not None else off,
        low_token_probability=np.exp(mins) < min_tok if min_tok is not None else off,
        risk_policy=~(confidence >= risk_threshold) if risk_threshold is not None else off,
        batch_nll=batch_nll,
        batch_perplexity=float(_perplexity(np.array([batch_nll]), warnings, "batch")[0]),
        warnings=warnings,
    )


def openai_logprobs(
    content: Sequence[Mapping[str, Any]], index: int
) -> tuple[F64, I64 | None, list[str]]:
    """Token log-probs of one OpenAI chat-completion ``logprobs.content`` list.

    Returns the log-probs, their token positions (None when no token was left out) and
    warnings. A log-prob of -9999 means "not in the top 20": censored, never used as a value.
    The token's true log-prob is at most the smallest of its ``top_logprobs``, so that upper
    bound stands in for it (the sequence's figures become optimistic bounds, and a flag that
    fires still fires); without ``top_logprobs`` the token is left out. Both are reported.
    """
    values = np.array([float(t["logprob"]) for t in content], dtype=np.float64)
    censored = values == CENSORED_LOGPROB
    warnings: list[str] = []
    if not censored.any():
        return values, None, warnings
    keep = np.ones(values.size, dtype=bool)
    n_bound = 0
    for j in np.flatnonzero(censored).tolist():  # only the censored tokens, usually few
        tops = [
            float(t["logprob"])
            for t in content[j].get("top_logprobs") or ()
            if float(t["logprob"]) != CENSORED_LOGPROB
        ]
        if tops:
            values[j] = min(tops)
            n_bound += 1
        else:
            keep[j] = False
    if n_bound:
        warnings.append(
            f"sequences[{index}]: {n_bound} censored log-probs (-9999, not in the "
            "top logprobs) replaced by their upper bound, the smallest top_logprob"
        )
    n_dropped = int(np.count_nonzero(~keep))
    if n_dropped == 0:
        return values, None, warnings
    warnings.append(
        f"sequences[{index}]: {n_dropped} censored log-probs (-9999) without top_logprobs left out"
    )
    return values[keep], np.flatnonzero(keep).astype(np.int64), warnings
