"""Names shared across the core and the service: literals, array aliases, reasons, flag rules
and the one options object of a scoring call.

Everything that names a task, an input type, a confidence method or a flag reason imports it
from here (the service's request schemas included), so each has one home.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONFIDENCE_METHODS",
    "DEFAULT_EPS",
    "INPUT_TYPES",
    "REASONS",
    "TASKS",
    "Bool",
    "ConfidenceMethod",
    "F64",
    "FlagRules",
    "FloatArray",
    "I64",
    "InputType",
    "Reason",
    "ScoreOptions",
    "Task",
]

Task = Literal["binary", "multiclass", "multilabel"]
InputType = Literal["probabilities", "logits", "log_probabilities"]
ConfidenceMethod = Literal["max_probability", "margin", "entropy", "true_class"]
Reason = Literal["low_confidence", "high_loss", "misclassified", "risk_policy"]

TASKS: tuple[Task, ...] = ("binary", "multiclass", "multilabel")
INPUT_TYPES: tuple[InputType, ...] = ("probabilities", "logits", "log_probabilities")
CONFIDENCE_METHODS: tuple[ConfidenceMethod, ...] = (
    "max_probability",
    "margin",
    "entropy",
    "true_class",
)
#: Flag reasons, in the order they are listed for an item.
REASONS: tuple[Reason, ...] = ("low_confidence", "high_loss", "misclassified", "risk_policy")
#: The reasons a sequence is flagged for, in the order of their bit masks.
SEQUENCE_REASONS = ("low_confidence", "low_token_probability", "risk_policy")

#: The default ``clip_eps``: float64 machine epsilon, as scikit-learn's ``log_loss``.
DEFAULT_EPS = float(np.finfo(np.float64).eps)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class FlagRules:
    """Checked flag rules; ``None`` means the rule is off."""

    min_confidence: float | None = 0.5
    max_loss: float | None = None
    misclassified: bool = False
    #: a risk policy's acceptance thresholds (API.md section 10): one for every item, or one per
    #: class, picked by the item's predicted class; ``inf`` accepts nothing. An item is flagged
    #: ``risk_policy`` unless its confidence >= its threshold (a NaN confidence never passes).
    risk_thresholds: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)  # it may hold arrays: compared by identity
class ScoreOptions:
    """Every option of a scoring call, as one frozen object (the arrays travel beside it).

    Built raw by ``xentcore.score`` from its keyword arguments, or by the service from a
    request; ``xentcore.validate`` checks it once and returns a checked copy, which is what
    the kernels receive. In a checked copy ``task`` is resolved, ``class_weights``,
    ``sample_weights`` and a per-class ``pos_weight`` or ``focal_alpha`` are float64 arrays,
    ``pos_weight`` and ``focal_alpha`` are otherwise a float or None, ``clip_eps`` is a float,
    and ``class_names`` is a tuple of str or None.
    """

    task: Task | None = None
    input_type: InputType = "probabilities"
    #: K weights (multiclass, multilabel), or 2 for binary: the negative class, the positive
    class_weights: Any = None
    sample_weights: Any = None
    pos_weight: Any = None
    label_smoothing: float = 0.0
    #: a label that marks an item (binary, sparse multiclass) or an entry (multilabel) unscored
    ignore_index: int | None = None
    focal_gamma: float = 0.0
    #: a number in [0, 1], or one per class (multiclass, multilabel); None: no alpha factor
    focal_alpha: Any = None
    confidence: ConfidenceMethod = "max_probability"
    decision_threshold: float = 0.5
    renormalize: bool = False
    sum_tolerance: float = 1e-4
    #: raw: a number in (0, 0.5) or "dtype" (the predictions' machine epsilon); checked: a float
    clip_eps: Any = DEFAULT_EPS
    class_names: Any = None
