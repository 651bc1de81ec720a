"""recmodels is the ML library: importing it must not pull in the orchestration stack."""

import pkgutil
import subprocess
import sys

import recmodels


def test_recmodels_never_imports_orchestration_stack():
    modules = [f"recmodels.{m.name}" for m in pkgutil.iter_modules(recmodels.__path__)]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in {'dagster', 'dbt', 'mlflow', 'dagster_dbt'})\n"
        "print(','.join(leaked))\n"
    )
    leaked = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert modules, "recmodels has no modules to check"
    assert leaked == ""
