"""Raw input -> checked, contiguous arrays and checked options: every rule of the contract's
section 1, each raising :class:`~xentcore.errors.InputError` with the field, the index and the
offending value.

What leaves this package is trusted by the kernels: finite, of the right shape, dtype float32 or
float64 (predictions) and int64 / float64 (labels), with a checked :class:`ScoreOptions`.

* :mod:`.arrays`: coercion to contiguous native float arrays and the finiteness scan;
* :mod:`.predictions`: the task from the shape, the rules of each input type;
* :mod:`.labels`: labels and class names;
* :mod:`.options`: scalar and vector options, flag rules;
* :mod:`.hints`: what an error message adds when the mistake is recognisable;
* :mod:`.batch`: ``check_batch``, which runs them in order.
"""

from xentcore.types import DEFAULT_EPS
from xentcore.validate.batch import Batch, check_batch, check_ids
from xentcore.validate.hints import (
    LOG_PROBABILITIES_HINT,
    LOGITS_HINT,
    MULTILABEL_HINT,
    PROBABILITIES_HINT,
)
from xentcore.validate.labels import Labels
from xentcore.validate.options import check_flag_rules, check_options

__all__ = [
    "DEFAULT_EPS",
    "LOGITS_HINT",
    "LOG_PROBABILITIES_HINT",
    "MULTILABEL_HINT",
    "PROBABILITIES_HINT",
    "Batch",
    "Labels",
    "check_batch",
    "check_flag_rules",
    "check_ids",
    "check_options",
]
