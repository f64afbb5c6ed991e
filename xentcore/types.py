"""Names shared across the core: tasks, input types, confidence methods and the flag rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONFIDENCE_METHODS",
    "INPUT_TYPES",
    "REASONS",
    "TASKS",
    "ConfidenceMethod",
    "FlagRules",
    "InputType",
    "Task",
]

Task = Literal["binary", "multiclass", "multilabel"]
InputType = Literal["probabilities", "logits", "log_probabilities"]
ConfidenceMethod = Literal["max_probability", "margin", "entropy", "true_class"]

TASKS: tuple[Task, ...] = ("binary", "multiclass", "multilabel")
INPUT_TYPES: tuple[InputType, ...] = ("probabilities", "logits", "log_probabilities")
CONFIDENCE_METHODS: tuple[ConfidenceMethod, ...] = (
    "max_probability",
    "margin",
    "entropy",
    "true_class",
)
#: Flag reasons, in the order they are listed for an item.
REASONS: tuple[str, ...] = ("low_confidence", "high_loss", "misclassified")


@dataclass(frozen=True)
class FlagRules:
    """Checked flag rules; ``None`` means the rule is off."""

    min_confidence: float | None = 0.5
    max_loss: float | None = None
    misclassified: bool = False
