"""The open-loop load generator against a small HTTP server: bodies, statuses, keep-alive and due times."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.load import Request, evenly, open_loop
from benchmarks.serving_crash import acknowledged_ids


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API's server
    connections: set = set()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        Echo.connections.add(self.client_address)
        if self.path == "/slow":
            time.sleep(0.2)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # A keep-alive answer, then the connection closed, as a server closes one idle past its keep-alive timeout.
        self.close_connection = self.path == "/bye"

    def do_POST(self):  # noqa: N802
        received = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")  # the generator reads chunked answers too
        self.end_headers()
        payload = json.dumps({"accepted": len(received["events"]) - 1,
                              "rejected": [{"index": 0, "field": "item_id", "reason": "x"}]}).encode()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_requests_are_sent_when_due_and_answers_are_read_whole(server):
    Echo.connections.clear()
    requests = [Request("get", "GET", f"/items/{i}") for i in range(20)] + [Request("miss", "GET", "/missing")]
    results = open_loop("127.0.0.1", server, requests, evenly(len(requests), 100), keep_body=True)
    assert [json.loads(r.body)["path"] for r in results[:20]] == [f"/items/{i}" for i in range(20)]
    assert results[-1].status == 404 and results[0].status == 200
    # 10 ms apart against a fast server: connections are reused, not one per request.
    assert len(Echo.connections) < 10
    assert [round(b.due - a.due, 3) for a, b in zip(results, results[1:])] == [0.01] * 20


def test_latency_counts_from_the_due_time_so_a_slow_answer_shows(server):
    results = open_loop("127.0.0.1", server, [Request("slow", "GET", "/slow"), Request("fast", "GET", "/x")],
                        [0.0, 0.05])
    assert results[0].latency >= 0.2 and results[1].latency < 0.2


def test_acknowledged_events_leave_out_the_rejected_ones(server):
    batch = Request("events", "POST", "/events", {"events": [{"event_id": "a"}, {"event_id": "b"}]})
    refused = Request("events", "GET", "/missing")
    results = open_loop("127.0.0.1", server, [batch], [0.0], keep_body=True)
    assert results[0].status == 200
    assert acknowledged_ids([batch], results) == {"b"}
    failed = open_loop("127.0.0.1", server, [refused], [0.0])
    assert acknowledged_ids([batch], failed) == set()


def test_a_connection_the_server_closed_after_a_keep_alive_answer_is_not_reused(server):
    requests = [Request("get", "GET", "/bye"), Request("get", "GET", "/after")]
    results = open_loop("127.0.0.1", server, requests, [0.0, 0.1])
    assert [r.status for r in results] == [200, 200]
