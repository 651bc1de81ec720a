"""The PostgreSQL server that Dagster's instance and MLflow share when ``RECSYS_POSTGRES_URL`` is set.

Unset, both keep their embedded stores under RECSYS_HOME (SQLite). The variable is read when a function here is
called, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

POSTGRES_URL_VARIABLE = "RECSYS_POSTGRES_URL"
EXPECTED_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
SCHEMES = ("postgresql", "postgresql+psycopg2")
# SQLAlchemy 2.1 opens a bare postgresql:// with psycopg 3; the driver installed (and dagster-postgres's) is psycopg2.
SQLALCHEMY_SCHEME = "postgresql+psycopg2"
# MLflow's tracking store lives in a database of its own beside Dagster's, named after it with this suffix.
MLFLOW_DATABASE_SUFFIX = "_mlflow"


class PostgresSettingError(ValueError):
    """RECSYS_POSTGRES_URL is malformed, or the server refused what it needs: one line, no traceback."""


@dataclass(frozen=True)
class PostgresURL:
    """A parsed ``postgresql://`` URL; ``url`` is the text it came from."""

    url: str
    database: str

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy, behind both Dagster's storage and MLflow's, naming the psycopg2 driver."""
        return urlunsplit(urlsplit(self.url)._replace(scheme=SQLALCHEMY_SCHEME))

    @property
    def libpq_url(self) -> str:
        """The URL for psycopg2 itself (libpq knows no driver suffix)."""
        return urlunsplit(urlsplit(self.url)._replace(scheme="postgresql"))

    def with_database(self, database: str) -> PostgresURL:
        """The same server, user and query parameters, another database."""
        parts = urlsplit(self.url)
        return PostgresURL(urlunsplit(parts._replace(path=f"/{database}")), database)

    def mlflow(self) -> PostgresURL:
        """Where MLflow's tracking store and registry go.

        Not Dagster's database: both keep a table named ``runs`` and an ``alembic_version`` table of their own
        migrations, so one schema would mix them. A database rather than a schema, because MLflow's migrations
        create their tables in the connection's default schema and have no setting for another one.
        """
        return self.with_database(self.database + MLFLOW_DATABASE_SUFFIX)


def parse_postgres_url(value: str, variable: str = POSTGRES_URL_VARIABLE) -> PostgresURL:
    """``value`` checked and parsed; ``PostgresSettingError`` naming ``variable`` and the expected form if not."""
    problem = None
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError as error:
        parts, port, problem = None, None, str(error)
    database = unquote(parts.path.lstrip("/")) if parts else ""
    if problem is None:
        if parts.scheme not in SCHEMES:
            problem = f"the scheme must be {' or '.join(SCHEMES)}"
        elif not parts.hostname or not parts.username:
            problem = "it needs a user and a host"
        elif not database or "/" in database:
            problem = "it needs one database name after the host"
        elif port == 0:
            problem = "the port must be between 1 and 65535"
    if problem is not None:
        raise PostgresSettingError(f"{variable}={value!r} is not valid ({problem}); expected {EXPECTED_FORM}")
    return PostgresURL(value.strip(), database)


def postgres_url() -> PostgresURL | None:
    """``RECSYS_POSTGRES_URL`` parsed, or None when it is unset or blank (the embedded stores)."""
    value = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    return parse_postgres_url(value) if value else None


def ensure_database(server: PostgresURL, database: str) -> None:
    """Create ``database`` on ``server``'s PostgreSQL unless it exists (connecting to ``server``'s own database)."""
    import psycopg2
    from psycopg2 import sql

    try:
        connection = psycopg2.connect(server.libpq_url)
    except psycopg2.Error as error:
        raise PostgresSettingError(f"{POSTGRES_URL_VARIABLE}: cannot connect to {server.database!r}: "
                                   f"{_first_line(error)}") from None
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg2.errors.DuplicateDatabase:
        pass  # another process created it between the check and the CREATE
    except psycopg2.Error as error:
        raise PostgresSettingError(
            f"{POSTGRES_URL_VARIABLE}: database {database!r} is missing and could not be created "
            f"({_first_line(error)}); create it, or grant the user CREATEDB"
        ) from None
    finally:
        connection.close()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
