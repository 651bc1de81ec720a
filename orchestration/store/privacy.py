"""Customer pseudonymisation, identical to the dbt macro ``pseudonymize`` (transforms/macros).

Marts never carry a shop's raw customer ids. Callers that speak in raw ids (the serving API, the CLI)
map them with this function, so both sides must agree byte for byte; a test compares them.
"""

from __future__ import annotations

import hashlib
import os
import re

_FLOAT_SUFFIX = re.compile(r"\.0+$")
# So the pipeline runs out of the box; being public, it protects nothing, and dbt's asset warns when it is used.
DEV_PSEUDONYMIZATION_KEY = "recsys-dev-key"
KEY_VARIABLE = "RECSYS_PSEUDONYMIZATION_KEY"  # the setting that holds the key


def pseudonymization_key(configured: str | None = None) -> str:
    """``configured``, else ``$RECSYS_PSEUDONYMIZATION_KEY``, else the development key."""
    return configured or os.environ.get(KEY_VARIABLE) or DEV_PSEUDONYMIZATION_KEY


def normalize_customer_id(raw_id: object) -> str:
    """Trim, and drop the ``.0`` that spreadsheets and pandas add to integer ids (``17850.0`` -> ``17850``)."""
    return _FLOAT_SUFFIX.sub("", str(raw_id).strip())


def pseudonymize(raw_id: object, key: str) -> str:
    """``'u_' + sha256(key + '|' + normalized id)[:16]``."""
    digest = hashlib.sha256(f"{key}|{normalize_customer_id(raw_id)}".encode()).hexdigest()
    return f"u_{digest[:16]}"


def pseudonymize_session(session_id: object, key: str) -> str:
    """An anonymous visitor's key, ``'s_' + sha256(key + '|session:' + trimmed session id)[:16]``: the dbt macro
    ``pseudonymize_session``. The prefix keeps a session apart from every customer (``u_``)."""
    digest = hashlib.sha256(f"{key}|session:{str(session_id).strip()}".encode()).hexdigest()
    return f"s_{digest[:16]}"
