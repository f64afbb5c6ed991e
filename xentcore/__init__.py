"""xentcore: vectorized cross-entropy, confidence, flags, calibration and sequence scoring."""

from xentcore.calibration import CalibrationResult, calibration
from xentcore.errors import InputError
from xentcore.score import ScoreResult, score
from xentcore.sequences import SequenceResult, score_sequences

__all__ = [
    "CalibrationResult",
    "InputError",
    "ScoreResult",
    "SequenceResult",
    "calibration",
    "score",
    "score_sequences",
]

__version__ = "0.1.0"
