"""xentcore: vectorized cross-entropy, confidence, flags, calibration and sequence scoring."""

# NATIVE_KERNELS: whether the compiled row kernels (the C extension xentcore._rowops) are in
# use; False where xentcore was installed without a C compiler (numpy gives the same results).
from xentcore._kernels import NATIVE as NATIVE_KERNELS
from xentcore.calibration import CalibrationResult, calibration
from xentcore.errors import InputError
from xentcore.risk import RiskCoverage, RiskPolicyFit, risk_control, risk_coverage
from xentcore.score import ScoreResult, score
from xentcore.sequences import SequenceResult, score_sequences
from xentcore.state import Summary

__all__ = [
    "CalibrationResult",
    "InputError",
    "NATIVE_KERNELS",
    "RiskCoverage",
    "RiskPolicyFit",
    "ScoreResult",
    "SequenceResult",
    "Summary",
    "calibration",
    "risk_control",
    "risk_coverage",
    "score",
    "score_sequences",
]

__version__ = "0.1.0"
