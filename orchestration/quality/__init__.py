"""Great Expectations suites for the marts, wrapped by blocking asset checks in ``orchestration.defs.quality``."""

from orchestration.quality.expectations import (
    MART_SUITES,
    MartSuite,
    QualityThresholds,
    ValidationOutcome,
    validate_frame,
)

__all__ = ["MART_SUITES", "MartSuite", "QualityThresholds", "ValidationOutcome", "validate_frame"]
