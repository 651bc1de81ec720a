"""Great Expectations suites on the marts as asset checks; the blocking ones stop everything downstream."""


import dagster as dg

from orchestration.defs.resources import WarehouseResource
from orchestration.quality import MART_SUITES, MartSuite, QualityThresholds, validate_frame

MARTS_SCHEMA = "marts"


def _expectation_check(suite: MartSuite) -> dg.AssetChecksDefinition:
    check_name = "great_expectations" if suite.blocking else "great_expectations_warnings"

    @dg.asset_check(
        asset=dg.AssetKey([suite.table]),
        name=check_name,
        blocking=suite.blocking,
        description=suite.description,
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        columns = ", ".join(suite.columns)
        with warehouse.connect(read_only=True) as con:
            frame = con.sql(f"select {columns} from {MARTS_SCHEMA}.{suite.table}").df()
        if suite.prepare is not None:
            frame = suite.prepare(frame)
        outcome = validate_frame(frame, suite.build(QualityThresholds()))
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR if suite.blocking else dg.AssetCheckSeverity.WARN,
            description=outcome.summary(),
            metadata={
                "rows_validated": len(frame),
                "expectations": outcome.evaluated,
                "failed_expectations": len(outcome.failures),
                "failures": dg.MetadataValue.md(outcome.summary()),
            },
        )

    return _check


mart_expectation_checks = [_expectation_check(suite) for suite in MART_SUITES]
