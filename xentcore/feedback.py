"""The feedback loop's arithmetic (API.md section 9): audit draws, kept rows, late labels, and
the sums of the calibration set ("labeled") and of the other late labels ("reviewed").

Kept rows. A kept item keeps its prediction in a form that scores a later label exactly:

- binary: p (float64); the loss of a label y in {0, 1} is -[y log p + (1 - y) log(1 - p)],
  p clipped to [eps, 1 - eps] (eps = float64 machine epsilon, section 1's default);
- multiclass: the K log-probabilities as float32 (the loss is -log p_y: float32 keeps it to
  about 6e-8 relative) when K <= ``max_classes``; above it no row, and a late label gives
  correctness (from the kept predicted class) but no loss;
- multilabel: the K probabilities as float32 under the same cap; the loss of a 0/1 row is the
  mean over k of the binary loss (section 2), correct = the predicted set equals the true set;
- sequences: confidence, NLL and token count; a verdict (1 = acceptable, 0 = wrong) is the
  label: correct = verdict 1, no loss.

The loss of the calibration set is this plain cross-entropy of the kept form (no label
smoothing, class or sample weights: a late label carries none), for items labelled in their
batch too, so that every item of the set counts alike.

Sums. Each labelled item adds to the sums of the batch it was scored in (and so to that
batch's minute, hour, day and lifetime): in the calibration set (its batch came with labels,
or it was audited) ``lab_n``, ``lab_correct``, ``lab_loss_sum`` / ``lab_loss_n`` (items with a
loss), ``lab_unflagged`` / ``lab_unflagged_wrong`` and the 15 uniform top-label bins;
otherwise (a late label on an item neither audited nor labelled in its batch) ``rev_n`` and
``rev_correct``. A replaced label adds the difference (new minus old), so sums stay those of the
current labels. The figures::

    labeled.accuracy = lab_correct / lab_n
    labeled.loss_mean = lab_loss_sum / lab_loss_n
    labeled.accepted_error_rate = lab_unflagged_wrong / lab_unflagged
    labeled.ece = sum_b |correct_b - conf_b| / sum_b n_b
    reviewed.accuracy = rev_correct / rev_n
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import chunk_rows
from xentcore.calibration import uniform_bin_index
from xentcore.flags import FlagMasks
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import ratios
from xentcore.types import DEFAULT_EPS, F64, I64, REASONS, Bool
from xentcore.validate import Batch

__all__ = [
    "LABEL_SCALARS",
    "LABEL_SUMS",
    "N_LABEL_BINS",
    "KeptRows",
    "audit_mask",
    "binary_loss",
    "keep_batch",
    "keep_sequences",
    "label_contributions",
    "label_figures_rows",
    "labeled_figures",
    "late_outcomes",
    "reviewed_figures",
]

#: Calibration-set bins (uniform over the top-label probability, as section 4's default).
N_LABEL_BINS = 15
#: The scalar label sums, in the order of :data:`LABEL_SUMS`.
LABEL_SCALARS = (
    "lab_n",
    "lab_correct",
    "lab_loss_sum",
    "lab_loss_n",
    "lab_unflagged",
    "lab_unflagged_wrong",
    "rev_n",
    "rev_correct",
)
#: Every label sum kept per batch and rollup row: the scalars, then the 15 bins' item count,
#: top-label probability sum and correct count.
LABEL_SUMS = (
    *LABEL_SCALARS,
    *(f"lab_bin_n_{b}" for b in range(N_LABEL_BINS)),
    *(f"lab_bin_conf_{b}" for b in range(N_LABEL_BINS)),
    *(f"lab_bin_correct_{b}" for b in range(N_LABEL_BINS)),
)
_S = {name: i for i, name in enumerate(LABEL_SUMS)}
_BIN0 = len(LABEL_SCALARS)


def audit_mask(n: int, rate: float, seed: int | None = None) -> Bool:
    """Each of ``n`` items marked for audit independently with probability ``rate``.

    ``numpy.random.default_rng(seed).random(n) < rate``: the same seed, rate and n draw the
    same items; without a seed each call draws afresh. Rate 0 marks none, rate 1 all.
    """
    if rate <= 0.0:
        return np.zeros(n, dtype=bool)
    draws: F64 = np.random.default_rng(seed).random(n)
    return draws < rate


@dataclass(frozen=True)
class KeptRows:
    """What a stream keeps of each item of one batch (arrays of length N).

    ``predicted`` is the class index (-1 for multilabel and sequences; the set is
    ``predicted_set``); ``top_prob`` the top-label probability the calibration bins use
    (binary max(p, 1 - p), multiclass max p, multilabel the least certain entry's
    max(p, 1 - p), sequences the confidence); ``label`` the class (or 0/1, or the verdict)
    when the batch came with labels, else -1 (multilabel: ``label_set``); ``loss`` and
    ``correct`` that label's outcome (NaN / False without one); ``row`` the kept prediction
    (see the module docstring) or None.
    """

    task: str
    n_classes: int
    predicted: I64
    confidence: F64
    top_prob: F64
    flagged: Bool
    reasons: npt.NDArray[np.uint8]
    audit: Bool
    labeled: Bool
    label: I64
    loss: F64
    correct: Bool
    predicted_set: Bool | None = None
    label_set: Bool | None = None
    row: npt.NDArray[Any] | None = None
    nll: F64 | None = None
    n_tokens: I64 | None = None

    def __len__(self) -> int:
        return int(self.predicted.shape[0])


def _reason_bits(masks: FlagMasks) -> npt.NDArray[np.uint8]:
    out = np.zeros(masks.flagged.shape[0], dtype=np.uint8)
    for b, name in enumerate(REASONS):
        out |= getattr(masks, name).astype(np.uint8) << np.uint8(b)
    return out


def _probabilities(x: npt.NDArray[Any], input_type: str) -> F64:
    """Binary / multilabel p from the batch's values (float64; logits through a stable
    sigmoid)."""
    v = x.astype(np.float64)
    if input_type == "probabilities":
        return v
    if input_type == "log_probabilities":
        return np.exp(v)
    out: F64 = np.exp(-np.logaddexp(0.0, -v))  # sigmoid without overflow
    return out


def _log_probabilities(x: npt.NDArray[Any], input_type: str, eps: float) -> F64:
    """Multiclass log p (N, K) in float64 from the batch's values: logits through log-softmax,
    probabilities through their clipped log (section 1), log-probabilities clipped alike."""
    v = x.astype(np.float64)
    if input_type == "logits":
        m = v.max(axis=1, keepdims=True)
        shifted = v - m
        out: F64 = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return out
    if input_type == "probabilities":
        return np.log(np.clip(v, eps, 1.0 - eps))
    return np.clip(v, np.log(eps), np.log1p(-eps))


def _soft(batch: Batch, label: I64) -> F64:
    """The binary targets as sent (soft targets stay soft), or the hard labels."""
    if batch.labels is not None and batch.labels.target is not None:
        return batch.labels.target.astype(np.float64)
    return np.clip(label, 0, 1).astype(np.float64)


def keep_batch(batch: Batch, result: ScoreResult, audit: Bool, max_classes: int) -> KeptRows:
    """What a stream keeps of each item of a scored batch (see :class:`KeptRows`).

    Labels that came with the batch are scored on the kept form at full precision (plain
    cross-entropy of the targets as sent, soft ones included; no smoothing or weights); their
    true class (section 1) is the kept label and decides correctness; an ignored item keeps
    no label. The multiclass
    log-probabilities are computed in chunks of rows, so memory stays bounded.
    """
    n, k, task = batch.n_items, batch.n_classes, batch.task
    eps = batch.options.clip_eps
    labeled = np.zeros(n, dtype=bool)
    label = np.full(n, -1, dtype=np.int64)
    if result.true_class is not None:
        labeled = np.ones(n, dtype=bool) if result.scored is None else result.scored.copy()
    correct = np.zeros(n, dtype=bool) if result.correct is None else result.correct & labeled
    loss = np.full(n, np.nan)
    row: npt.NDArray[Any] | None = None
    predicted_set = label_set = None
    predicted = np.full(n, -1, dtype=np.int64)
    if task == "binary":
        p = _probabilities(batch.x, batch.input_type)
        row = p
        predicted = result.predicted_index.astype(np.int64)
        top = np.maximum(p, 1.0 - p)
        if result.true_class is not None:
            label = np.where(labeled, result.true_class, -1).astype(np.int64)
            loss = np.where(labeled, binary_loss(p, _soft(batch, label), eps), np.nan)
    elif task == "multilabel":
        p = _probabilities(batch.x, batch.input_type)
        predicted_set = result.predicted_index.astype(bool)
        top = np.maximum(p, 1.0 - p).min(axis=1)
        row = p.astype(np.float32) if k <= max_classes else None
        if result.true_class is not None:
            label_set = result.true_class.astype(bool)
            target = batch.labels.target if batch.labels is not None else None
            truth = label_set.astype(np.float64) if target is None else target
            item_loss = binary_loss(p, truth, eps).mean(axis=1)
            loss = np.where(labeled, item_loss, np.nan)
    else:
        predicted = result.predicted_index.astype(np.int64)
        top = np.full(n, np.nan) if result.top_confidence is None else result.top_confidence
        if result.true_class is not None:
            label = np.where(labeled, result.true_class, -1).astype(np.int64)
        keep_row = k <= max_classes
        rows32 = np.empty((n, k), dtype=np.float32) if keep_row else None
        dense = batch.labels.target if batch.labels is not None else None
        safe = np.clip(label, 0, k - 1)
        for sl in chunk_rows(n, k):
            log_p = _log_probabilities(batch.x[sl], batch.input_type, eps)
            if rows32 is not None:
                rows32[sl] = log_p
            if dense is not None:  # target distributions: -sum_k q_k log p_k
                loss[sl] = np.where(labeled[sl], -(dense[sl] * log_p).sum(axis=1), np.nan)
            elif result.true_class is not None:
                picked = -log_p[np.arange(log_p.shape[0]), safe[sl]]
                loss[sl] = np.where(labeled[sl], picked, np.nan)
        row = rows32
    return KeptRows(
        task=task,
        n_classes=k,
        predicted=predicted,
        confidence=result.confidence,
        top_prob=np.asarray(top, dtype=np.float64),
        flagged=result.flagged,
        reasons=_reason_bits(result.masks),
        audit=audit,
        labeled=labeled,
        label=label,
        loss=loss,
        correct=correct,
        predicted_set=predicted_set,
        label_set=label_set,
        row=row,
    )


def keep_sequences(result: SequenceResult, audit: Bool) -> KeptRows:
    """What a stream keeps of each sequence: confidence, NLL and token count (no label until
    a verdict arrives)."""
    n = int(result.n_tokens.shape[0])
    reasons = result.low_confidence.astype(np.uint8) | (
        result.low_token_probability.astype(np.uint8) << np.uint8(1)
    )
    return KeptRows(
        task="sequences",
        n_classes=0,
        predicted=np.full(n, -1, dtype=np.int64),
        confidence=result.confidence,
        top_prob=result.confidence,
        flagged=result.flagged,
        reasons=reasons,
        audit=audit,
        labeled=np.zeros(n, dtype=bool),
        label=np.full(n, -1, dtype=np.int64),
        loss=np.full(n, np.nan),
        correct=np.zeros(n, dtype=bool),
        nll=result.nll,
        n_tokens=result.n_tokens.astype(np.int64),
    )


def binary_loss(p: F64, y: F64, eps: float = DEFAULT_EPS) -> F64:
    """-[y log p + (1 - y) log(1 - p)], p clipped to [eps, 1 - eps] (section 2, no options)."""
    q = np.clip(p, eps, 1.0 - eps)
    out: F64 = -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    return out


def late_outcomes(
    task: str,
    predicted: I64,
    labels: npt.NDArray[Any],
    *,
    rows: npt.NDArray[Any] | None = None,
    predicted_set: Bool | None = None,
    eps: float = DEFAULT_EPS,
) -> tuple[F64, Bool]:
    """(loss, correct) of late ``labels`` for kept items of one shape (vectorized).

    ``labels``: class indices (multiclass), 0/1 (binary), an (n, K) 0/1 matrix (multilabel) or
    verdicts (sequences). ``rows``: the kept rows of the items, (n, K) / (n,), or None (no loss:
    NaN). ``predicted_set`` is the multilabel prediction; ``eps`` the clipping of probabilities
    (the batch's ``clip_eps``).
    """
    n = predicted.shape[0]
    loss = np.full(n, np.nan)
    if task == "sequences":
        return loss, labels.astype(np.int64) == 1
    if task == "multilabel":
        assert predicted_set is not None
        truth = labels.astype(bool)
        correct = np.all(predicted_set == truth, axis=1)
        if rows is not None:
            p = rows.astype(np.float64)
            loss = binary_loss(p, truth.astype(np.float64), eps).mean(axis=1)
        return loss, correct
    y = labels.astype(np.int64)
    correct = predicted == y
    if rows is not None:
        if task == "binary":
            loss = binary_loss(rows.astype(np.float64), y.astype(np.float64), eps)
        else:
            loss = -rows[np.arange(n), y].astype(np.float64)
    return loss, correct


def label_contributions(
    *, correct: Bool, loss: F64, top_prob: F64, flagged: Bool, in_calibration: Bool
) -> F64:
    """Each item's addition to the label sums, an (n, len(LABEL_SUMS)) matrix (see the module
    docstring): calibration-set items add to the ``lab_*`` sums, the others to ``rev_*``."""
    n = correct.shape[0]
    out = np.zeros((n, len(LABEL_SUMS)))
    cal = in_calibration
    rev = ~cal
    has_loss = cal & np.isfinite(loss)
    out[:, _S["lab_n"]] = cal
    out[:, _S["lab_correct"]] = cal & correct
    out[:, _S["lab_loss_sum"]] = np.where(has_loss, loss, 0.0)
    out[:, _S["lab_loss_n"]] = has_loss
    out[:, _S["lab_unflagged"]] = cal & ~flagged
    out[:, _S["lab_unflagged_wrong"]] = cal & ~flagged & ~correct
    out[:, _S["rev_n"]] = rev
    out[:, _S["rev_correct"]] = rev & correct
    binned = cal & np.isfinite(top_prob)
    rows = np.flatnonzero(binned)
    b = uniform_bin_index(top_prob[rows], N_LABEL_BINS)
    out[rows, _BIN0 + b] = 1.0
    out[rows, _BIN0 + N_LABEL_BINS + b] = top_prob[rows]
    out[rows, _BIN0 + 2 * N_LABEL_BINS + b] = correct[rows]
    return out


def labeled_figures(sums: Mapping[str, float]) -> dict[str, float | int | None]:
    """``{"n", "accuracy", "loss_mean", "ece", "accepted_error_rate"}`` of the calibration set
    from its sums by name (None where a figure has no items)."""
    return _one_row(sums)["labeled"]


def reviewed_figures(sums: Mapping[str, float]) -> dict[str, float | int | None]:
    """``{"n", "accuracy"}`` of late labels outside the calibration set."""
    return _one_row(sums)["reviewed"]


def _one_row(sums: Mapping[str, float]) -> dict[str, dict[str, float | int | None]]:
    return label_figures_rows(np.array([[sums[name] for name in LABEL_SUMS]]))[0]


def label_figures_rows(sums: F64) -> list[dict[str, dict[str, float | int | None]]]:
    """``{"labeled": ..., "reviewed": ...}`` for each row of an (n, len(LABEL_SUMS)) matrix of
    label sums (None where a figure has no items)."""
    c = {name: sums[:, i] for name, i in _S.items()}
    bins = sums[:, _BIN0:]
    count = bins[:, :N_LABEL_BINS].sum(axis=1)
    conf = bins[:, N_LABEL_BINS : 2 * N_LABEL_BINS]
    right = bins[:, 2 * N_LABEL_BINS :]
    ece = ratios(np.abs(right - conf).sum(axis=1), count)
    n = c["lab_n"].astype(np.int64).tolist()
    accuracy = ratios(c["lab_correct"], c["lab_n"])
    loss = ratios(c["lab_loss_sum"], c["lab_loss_n"])
    accepted = ratios(c["lab_unflagged_wrong"], c["lab_unflagged"])
    rev_n = c["rev_n"].astype(np.int64).tolist()
    rev_acc = ratios(c["rev_correct"], c["rev_n"])
    return [
        {
            "labeled": {
                "n": n[i],
                "accuracy": accuracy[i],
                "loss_mean": loss[i],
                "ece": ece[i],
                "accepted_error_rate": accepted[i],
            },
            "reviewed": {"n": rev_n[i], "accuracy": rev_acc[i]},
        }
        for i in range(sums.shape[0])
    ]
