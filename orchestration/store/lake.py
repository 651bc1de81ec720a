"""The shared warehouse: DuckLake with its catalog in PostgreSQL and its data files on a shared path.

Selected by ``RECSYS_WAREHOUSE=ducklake+postgresql://USER[:PASSWORD]@HOST:PORT/DB?data_path=DIR`` (or the warehouse
resource's ``url``). Unlike the single DuckDB file, several processes and machines may write at once: the catalog
serialises commits in PostgreSQL and retries conflicting ones. DuckDB names the attached lake ``warehouse``, the
name the embedded file gets from its stem, so dbt's manifest and every query read the same relations either way.

The DuckLake and Postgres extensions come from PyPI packages (no download at run time); DuckDB loads an extension by
name only from an extension folder laid out as ``v{version}/{platform}/{name}.duckdb_extension``, and the Postgres
extension's own name is ``postgres_scanner``, so this module links the packaged files into such a folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb

WAREHOUSE_VARIABLE = "RECSYS_WAREHOUSE"
LAKE_SCHEME = "ducklake+postgresql"
LAKE_FORM = f"{LAKE_SCHEME}://USER[:PASSWORD]@HOST:PORT/DB?data_path=DIR"
CATALOG_NAME = "warehouse"  # the embedded file's catalog name (warehouse.duckdb), see transforms/profiles.yml
DEFAULT_PORT = 5432
# (PyPI package, the extension's file name DuckDB expects)
_PACKAGED_EXTENSIONS = (("duckdb_extension_ducklake", "ducklake"), ("duckdb_extension_postgres", "postgres_scanner"))


class LakeSettingError(ValueError):
    """The shared warehouse's setting is malformed; the message names the value and the expected form."""


@dataclass(frozen=True)
class Lake:
    """Where a DuckLake's catalog (a PostgreSQL database) and its data files are."""

    user: str
    host: str
    port: int
    database: str
    data_path: str
    password: str | None = None

    @classmethod
    def parse(cls, url: str, source: str = WAREHOUSE_VARIABLE) -> Lake:
        parts = urlsplit(url)
        problem = None
        if parts.scheme != LAKE_SCHEME:
            problem = f"the scheme is {parts.scheme or 'missing'!r}"
        elif not parts.hostname or not parts.username:
            problem = "the user or host is missing"
        elif not parts.path.strip("/"):
            problem = "the database name is missing"
        data_path = parse_qs(parts.query).get("data_path", [""])[0]
        if problem is None and not data_path:
            problem = "data_path is missing"
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            problem, port = "the port is not a number", DEFAULT_PORT
        if problem:
            raise LakeSettingError(f"{source}={redacted(url)}: {problem}; expected {LAKE_FORM}")
        return cls(unquote(parts.username), parts.hostname, port, unquote(parts.path.strip("/")), data_path,
                   unquote(parts.password) if parts.password else None)

    @property
    def catalog(self) -> str:
        """The libpq connection string DuckLake's ``postgres:`` catalog takes."""
        fields = {"dbname": self.database, "host": self.host, "port": self.port, "user": self.user}
        if self.password:
            fields["password"] = self.password
        return " ".join(f"{key}={_libpq_value(value)}" for key, value in fields.items())

    @property
    def data_folder(self) -> str:
        """The data path as DuckLake stores it: a local folder absolute (every process must mean the same one),
        an object-store URL as given."""
        return self.data_path if "://" in self.data_path else str(Path(self.data_path).resolve())

    def attach_sql(self, read_only: bool = False) -> str:
        options = f"DATA_PATH '{_sql_string(self.data_folder)}'" + (", READ_ONLY" if read_only else "")
        return f"ATTACH IF NOT EXISTS 'ducklake:postgres:{_sql_string(self.catalog)}' AS {CATALOG_NAME} ({options})"

    def describe(self) -> str:
        return f"DuckLake {self.user}@{self.host}:{self.port}/{self.database}, data in {self.data_folder}"


def _libpq_value(value: object) -> str:
    text = str(value)
    if text and not re.search(r"[\s'\\]", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


def redacted(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def lake_setting(url: str | None = None) -> str | None:
    """The shared warehouse's URL: ``url`` if given, else ``$RECSYS_WAREHOUSE`` when it names a lake; None for
    the embedded file (the variable may also hold the file's path, which dbt's profile reads)."""
    value = url or os.environ.get(WAREHOUSE_VARIABLE) or ""
    return value if value.startswith("ducklake+") else None


def shared_warehouse(url: str | None = None) -> Lake | None:
    """The configured lake, or None when the warehouse is the embedded DuckDB file."""
    setting = lake_setting(url)
    return Lake.parse(setting) if setting else None


def in_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s current catalog is a DuckLake, which has no PRIMARY KEY or UNIQUE constraints."""
    rows = con.execute("select type from duckdb_databases() where database_name = current_database()").fetchall()
    return rows == [("ducklake",)]


def extension_folder(root: Path) -> Path:
    """An extension folder under ``root`` holding links to the packaged DuckLake and Postgres extensions."""
    import importlib.util

    version = duckdb.__version__
    platform = duckdb.execute("pragma platform").fetchone()[0]
    folder = root / f"v{version}" / platform
    folder.mkdir(parents=True, exist_ok=True)
    for package, name in _PACKAGED_EXTENSIONS:
        link = folder / f"{name}.duckdb_extension"
        if link.exists():
            continue
        spec = importlib.util.find_spec(package)
        built = Path(spec.origin).parent / "extensions" / f"v{version}" if spec and spec.origin else None
        files = sorted(built.glob("*.duckdb_extension")) if built and built.is_dir() else []
        if not files:
            raise LakeSettingError(f"the shared warehouse needs the PyPI package {package.replace('_', '-')} built "
                                   f"for DuckDB {version}; install the project's pinned requirements")
        try:
            os.symlink(files[0], link)
        except FileExistsError:  # another process linked it first
            pass
    return root


def connection_config(extensions: Path) -> dict[str, str]:
    """DuckDB settings for a lake connection: the packaged extensions, never a download."""
    return {"extension_directory": str(extensions), "autoinstall_known_extensions": "false"}
