"""Real PostgreSQL and Redis servers on loopback for the tests of the scale-out paths.

Each starts from the Debian packages' binaries in a temporary folder, on a free port, and is stopped when the
session ends. Where a binary is absent the test skips and says what to install (``.ci/run`` installs both).
PostgreSQL refuses to run as root, so under root (CI containers) the server runs as the packages' ``postgres``
user, or ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_USER = "recsys"
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries out of PATH, one folder per major version.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _unprivileged_prefix(folder: Path) -> list[str]:
    """``runuser -u USER --`` when we are root (PostgreSQL will not run as root); else nothing."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # runuser lives in sbin, which a bare PATH (CI's, env -i's) leaves out.
        runuser = shutil.which("runuser") or next(
            (path for path in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(path)), None)
        if runuser is None:
            pytest.skip("PostgreSQL will not run as root and runuser (util-linux) is not installed")
        return [runuser, "-u", user, "--"]
    pytest.skip("PostgreSQL will not run as root and there is no 'postgres' or 'nobody' user to run it as")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` (fresh) and return its ``postgresql://`` URL."""
        createdb = _postgres_binary("createdb")
        subprocess.run([createdb, "-h", self.host, "-p", str(self.port), "-U", self.user, name],
                       check=True, capture_output=True, text=True)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1, trust authentication, superuser ``recsys``."""
    binaries = {name: _postgres_binary(name) for name in ("initdb", "pg_ctl", "createdb")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        pytest.skip(f"PostgreSQL is not installed ({', '.join(missing)} not found): install Debian's postgresql "
                    "package (.ci/run does)")
    # Not under tmp_path: pytest's folders are private to the user running the tests, whom the server may not be.
    folder = Path(tempfile.mkdtemp(prefix="recsys-postgres-"))
    data = folder / "data"
    prefix = _unprivileged_prefix(folder)
    port = free_port()
    created = subprocess.run([*prefix, binaries["initdb"], "-D", str(data), "-U", POSTGRES_USER, "--auth=trust",
                              "-E", "UTF8"], check=False, capture_output=True, text=True)
    if created.returncode != 0:
        raise RuntimeError(f"initdb failed: {created.stderr}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    started = subprocess.run([*prefix, binaries["pg_ctl"], "-D", str(data), "-o", options, "-l",
                              str(folder / "server.log"), "-w", "-t", str(int(START_SECONDS)), "start"], check=False,
                             capture_output=True, text=True)
    if started.returncode != 0:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")
    try:
        yield PostgresServer("127.0.0.1", port, POSTGRES_USER)
    finally:
        subprocess.run([*prefix, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "stop"], check=False,
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence; yields its ``redis://`` URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("Redis is not installed (redis-server not found): install Debian's redis-server package "
                    "(.ci/run does)")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_SECONDS
    while not _answers_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.1)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)
