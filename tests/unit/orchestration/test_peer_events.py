"""Another process's events read back from its files in the landing folder: what it appends, across its seals,
whole lines only, never this process's own."""

import os
import time
from datetime import datetime

import pytest

from orchestration.ingest.event_log import EventLog, EventLogSettings
from orchestration.ingest.event_rules import Event, EventRules, check_event, event_of_line
from orchestration.serving.peers import PeerEvents

NOW = datetime(2026, 12, 7, 12, 0, 0)
RULES = EventRules.from_project()


def _event(number: int, **values) -> Event:
    fields = {"event_id": f"e-{number}", "user_id": f" 1{number}.0 ", "item_id": "85123A.0", "event_type": "Purchase",
              "timestamp": f"2026-12-07T11:{number % 60:02d}:30.250+01:00", "quantity": "3", "price": "2.55",
              **values}
    event = check_event(fields, RULES, NOW)
    assert isinstance(event, Event)
    return event


def _same(got: list[Event], expected: list[Event]) -> None:
    assert [vars(e) for e in got] == [vars(e) for e in expected]


def test_a_logged_line_reads_back_as_the_event_checked():
    for event in (_event(1), _event(2, user_id=None, session_id="s-9", quantity=None, price=None, event_type="view")):
        _same([event_of_line(event.line)], [event])


@pytest.fixture
def logs(tmp_path):
    """The events logs of two processes in one landing folder, the first sealing after each append."""
    theirs = EventLog(tmp_path, EventLogSettings(max_bytes=1))
    mine = EventLog(tmp_path, EventLogSettings())
    with theirs, mine:
        yield tmp_path, theirs, mine


def test_the_other_processes_events_are_read_once_across_its_seals_and_never_our_own(logs):
    landing, theirs, mine = logs
    peers = PeerEvents(landing, mine.owns)
    assert peers.poll() == []
    first, second, third = [_event(n) for n in (1, 2, 3)], _event(4), _event(5)
    theirs.append([e.line for e in first])  # sealed at once: a file never seen open, after we began
    mine.append([_event(9).line])
    _same(peers.poll(), first)
    assert peers.poll() == []
    theirs.append([second.line])
    theirs.append([third.line])
    _same(peers.poll(), [second, third])
    assert peers.poll() == []


def test_an_open_file_is_read_as_it_grows_whole_lines_only(tmp_path):
    theirs = EventLog(tmp_path, EventLogSettings())
    with theirs:
        peers = PeerEvents(tmp_path, lambda name: False)
        theirs.append([_event(1).line])
        _same(peers.poll(), [_event(1)])
        path = theirs.open_folder / "interactions.csv"
        line = b",".join(value.encode() if value else b"" for value in _event(2).line) + b"\n"
        with open(path, "ab") as file:  # a line still being written
            file.write(line[:10])
        assert peers.poll() == []
        with open(path, "ab") as file:
            file.write(line[10:])
        _same(peers.poll(), [_event(2)])
        theirs.append([_event(3).line])
        _same(peers.poll(), [_event(3)])  # and, sealed at close, nothing read twice
    _same(peers.poll(), [])


def test_files_sealed_before_we_began_are_left_to_the_warehouse(tmp_path):
    with EventLog(tmp_path, EventLogSettings(max_bytes=1)) as theirs:
        theirs.append([_event(1).line])
        peers = PeerEvents(tmp_path, lambda name: False)
        assert peers.poll() == []
        theirs.append([_event(2).line])
        _same(peers.poll(), [_event(2)])


def test_no_landing_folder_yet_is_no_event(tmp_path):
    assert PeerEvents(tmp_path / "landing", lambda name: False).poll() == []


def test_a_file_opened_in_the_folder_times_tick_of_the_last_look_is_found(tmp_path):
    # A coarse clock: every change in the folder leaves it at one time, as two changes within one tick do.
    tick = time.time_ns()
    with EventLog(tmp_path, EventLogSettings(max_bytes=1)) as theirs:
        peers = PeerEvents(tmp_path, lambda name: False)
        os.utime(tmp_path, ns=(tick, tick))
        assert peers.poll() == []
        theirs.append([_event(1).line])  # a new (sealed) folder, the folder's time unchanged
        os.utime(tmp_path, ns=(tick, tick))
        _same(peers.poll(), [_event(1)])


def test_a_file_named_like_an_events_folder_and_an_unreadable_one_are_passed_over(tmp_path, caplog):
    peers = PeerEvents(tmp_path, lambda name: False)
    assert peers.poll() == []
    (tmp_path / "api-events-2024.csv").write_text("a shop's own file\n")  # a file, not a log's folder
    (tmp_path / ".api-events-x").mkdir()
    (tmp_path / ".api-events-x" / "interactions.csv").mkdir()  # the file a folder: unreadable as one
    assert peers.poll() == [] and peers.poll() == []
    assert sum("not following it" in message for message in caplog.messages) == 1
