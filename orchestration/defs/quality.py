"""Great Expectations suites on the marts as asset checks; the blocking ones stop everything downstream."""


import dagster as dg

from orchestration.defs.resources import WarehouseResource
from orchestration.quality import MART_SUITES, MartSuite, QualityThresholds, ValidationOutcome, validate_frame

MARTS_SCHEMA = "marts"


EXPECTATION_COLUMNS = ("expectation", "column", "bound", "observed", "passed")


def expectation_metadata(outcome: ValidationOutcome) -> dict[str, dg.MetadataValue | int]:
    """Every expectation of a Great Expectations run, with its bound and observed value, as check metadata."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "bool" if name == "passed" else "string")
                                     for name in EXPECTATION_COLUMNS])
    records = [dg.TableRecord({name: check[name] for name in EXPECTATION_COLUMNS}) for check in outcome.checks]
    return {"expectations": outcome.evaluated, "failed_expectations": len(outcome.failures),
            "results": dg.MetadataValue.table(records, schema=schema)}


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
            metadata={"rows_validated": len(frame), **expectation_metadata(outcome)},
        )

    return _check


mart_expectation_checks = [_expectation_check(suite) for suite in MART_SUITES]
