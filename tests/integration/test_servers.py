"""The loopback servers the scale-out tests start really answer."""

from __future__ import annotations

import socket
import subprocess

from tests.servers import _postgres_binary


def test_postgres_server_accepts_a_new_database(postgres_server):
    url = postgres_server.create_database("servers_check")
    assert url == f"postgresql://recsys@127.0.0.1:{postgres_server.port}/servers_check"
    listed = subprocess.run([_postgres_binary("psql"), "-h", "127.0.0.1", "-p", str(postgres_server.port), "-U",
                             "recsys", "-d", "servers_check", "-Atc", "select current_database()"],
                            capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "servers_check"


def test_redis_server_answers_set_and_get(redis_server):
    port = int(redis_server.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"SET recsys 42\r\nGET recsys\r\n")
        reply = b""
        while not reply.endswith(b"42\r\n"):
            chunk = sock.recv(64)
            assert chunk, f"Redis closed the connection after {reply!r}"
            reply += chunk
    assert reply == b"+OK\r\n$2\r\n42\r\n"
