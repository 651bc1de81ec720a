"""The events log: durable appends in whole lines, one header per file, rotation by size and age, sealing on close,
and recovery of what a killed writer left, never of a live writer's file."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from orchestration.ingest.event_log import (
    EVENT_COLUMNS,
    FILE_NAME,
    HEADER,
    OPEN_PREFIX,
    SEALED_PREFIX,
    EventLog,
    EventLogError,
    EventLogSettings,
    EventSettingError,
    encode_lines,
    recover,
)
from orchestration.ingest.landing import is_ignored_name, landing_kind, list_landing

REPO_ROOT = Path(__file__).resolve().parents[3]
NEVER = 3600.0  # seconds: an age limit no test reaches


def _row(event_id: str, item: str = "i1") -> tuple[str | None, ...]:
    return (event_id, "u1", None, item, "view", "2024-05-01T12:30:00.000000Z", None, None)


def _folders(landing: Path, prefix: str) -> list[Path]:
    return sorted(p for p in landing.iterdir() if p.name.startswith(prefix))


def _rows(folder: Path) -> list[list[str]]:
    """The file's records after its header, which must be the first line and the only one."""
    text = (folder / FILE_NAME).read_text()
    assert text.startswith(HEADER.decode()) and text.count(HEADER.decode()) == 1
    assert text.endswith("\n")
    return list(csv.reader(io.StringIO(text)))[1:]


def test_an_append_is_on_disk_as_whole_lines_under_one_header(tmp_path):
    with EventLog(tmp_path, EventLogSettings(max_age_seconds=NEVER)) as events:
        events.append([_row("e1"), ("e2", None, "visit 7", "a,b", "cart", "2024-05-01T12:30:00.000000Z", "2", "9.99")])
        events.append([_row("e3")])
        (folder,) = _folders(tmp_path, OPEN_PREFIX)
        assert events.open_folder == folder
        assert (folder / FILE_NAME).read_bytes() == HEADER + encode_lines(
            [_row("e1"), ("e2", None, "visit 7", "a,b", "cart", "2024-05-01T12:30:00.000000Z", "2", "9.99"), _row("e3")])
        assert _rows(folder)[1] == ["e2", "", "visit 7", "a,b", "cart", "2024-05-01T12:30:00.000000Z", "2", "9.99"]
        # Open, the folder is hidden: the landing sensor ignores it.
        assert is_ignored_name(folder.name)
    (sealed,) = _folders(tmp_path, SEALED_PREFIX)
    assert not _folders(tmp_path, OPEN_PREFIX) and sealed.name == SEALED_PREFIX + folder.name[len(OPEN_PREFIX):]
    # Sealed, it is a generic folder the landing sensor ingests.
    ((entry, members),) = list_landing(tmp_path)
    assert not is_ignored_name(entry.name) and landing_kind(entry.name, members) == "generic"
    assert [row[0] for row in _rows(sealed)] == ["e1", "e2", "e3"]
    assert EVENT_COLUMNS == ("event_id", "user_id", "session_id", "item_id", "event_type", "timestamp", "quantity",
                             "price")


def test_nothing_appended_leaves_nothing_behind_and_a_closed_log_refuses(tmp_path):
    events = EventLog(tmp_path / "landing", EventLogSettings(max_age_seconds=NEVER))
    with events:
        events.append([])
    assert list((tmp_path / "landing").iterdir()) == []
    with pytest.raises(EventLogError, match="closed"):
        events.append([_row("e1")])


def test_a_file_is_sealed_once_it_holds_max_bytes(tmp_path):
    line = len(encode_lines([_row("e00")]))
    settings = EventLogSettings(max_bytes=len(HEADER) + 3 * line, max_age_seconds=NEVER)
    with EventLog(tmp_path, settings) as events:
        for number in range(7):
            events.append([_row(f"e{number:02d}")])
        sealed, still_open = _folders(tmp_path, SEALED_PREFIX), _folders(tmp_path, OPEN_PREFIX)
        assert [[row[0] for row in _rows(folder)] for folder in sealed] == [["e00", "e01", "e02"], ["e03", "e04", "e05"]]
        assert [[row[0] for row in _rows(folder)] for folder in still_open] == [["e06"]]
    assert len(_folders(tmp_path, SEALED_PREFIX)) == 3 and not _folders(tmp_path, OPEN_PREFIX)


def test_a_file_is_sealed_once_its_first_event_is_max_age_old(tmp_path):
    with EventLog(tmp_path, EventLogSettings(max_age_seconds=0.3)) as events:
        events.append([_row("e1")])
        assert _folders(tmp_path, OPEN_PREFIX) and not events.seal_if_due()  # too young
        deadline = time.monotonic() + 10
        while _folders(tmp_path, OPEN_PREFIX) and time.monotonic() < deadline:
            time.sleep(0.05)  # the log's own clock seals it, without another append
        (sealed,) = _folders(tmp_path, SEALED_PREFIX)
        assert not _folders(tmp_path, OPEN_PREFIX) and [r[0] for r in _rows(sealed)] == ["e1"]
        events.append([_row("e2")])  # the next event opens a new file
        assert len(_folders(tmp_path, OPEN_PREFIX)) == 1


def test_settings_come_from_the_environment_with_their_defaults(monkeypatch):
    monkeypatch.delenv("RECSYS_EVENTS_MAX_BYTES", raising=False)
    monkeypatch.delenv("RECSYS_EVENTS_MAX_AGE_SECONDS", raising=False)
    assert EventLogSettings.from_environment() == EventLogSettings(16 * 1024 * 1024, 60.0)
    monkeypatch.setenv("RECSYS_EVENTS_MAX_BYTES", "4096")
    monkeypatch.setenv("RECSYS_EVENTS_MAX_AGE_SECONDS", "2.5")
    assert EventLogSettings.from_environment() == EventLogSettings(4096, 2.5)
    monkeypatch.setenv("RECSYS_EVENTS_MAX_AGE_SECONDS", "0")
    with pytest.raises(ValueError, match="max_age_seconds"):
        EventLogSettings.from_environment()
    monkeypatch.setenv("RECSYS_EVENTS_MAX_AGE_SECONDS", "soon")
    with pytest.raises(ValueError, match="RECSYS_EVENTS_MAX_AGE_SECONDS"):
        EventLogSettings.from_environment()


def test_concurrent_appends_never_interleave_lines(tmp_path):
    threads, per_thread, rows_per_append = 8, 40, 3
    line = len(encode_lines([_row("t0-a00-r0", item="x" * 40)]))
    # Small files, so appends also race with rotation.
    settings = EventLogSettings(max_bytes=len(HEADER) + 25 * line, max_age_seconds=NEVER)
    errors = []

    def post(thread: int, events: EventLog) -> None:
        try:
            for append in range(per_thread):
                events.append([_row(f"t{thread}-a{append:02d}-r{r}", item="x" * 40) for r in range(rows_per_append)])
        except Exception as error:  # reported below, with the thread's rows missing
            errors.append(error)

    with EventLog(tmp_path, settings) as events:
        workers = [threading.Thread(target=post, args=(t, events)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert errors == []
    rows = [row for folder in _folders(tmp_path, SEALED_PREFIX) for row in _rows(folder)]
    assert all(len(row) == len(EVENT_COLUMNS) and row[3] == "x" * 40 for row in rows)
    assert sorted(row[0] for row in rows) == sorted(
        f"t{t}-a{a:02d}-r{r}" for t in range(threads) for a in range(per_thread) for r in range(rows_per_append))
    # One request's rows stay together, in order.
    positions = {row[0]: index for index, row in enumerate(rows)}
    for t in range(threads):
        for a in range(per_thread):
            first = positions[f"t{t}-a{a:02d}-r0"]
            assert [positions[f"t{t}-a{a:02d}-r{r}"] for r in range(rows_per_append)] == [first, first + 1, first + 2]


def _leftover(landing: Path, name: str, content: bytes) -> Path:
    folder = landing / f"{OPEN_PREFIX}{name}"
    folder.mkdir(parents=True)
    (folder / FILE_NAME).write_bytes(content)
    return folder


def test_recovery_cuts_a_torn_line_and_seals_the_folder(tmp_path):
    complete = HEADER + encode_lines([_row("e1"), _row("e2")])
    _leftover(tmp_path, "20240501T000000.000000Z-4242-000001", complete + b"e3,u1,,i1,vi")
    _leftover(tmp_path, "20240501T000000.000000Z-4242-000002", complete)  # ended cleanly, not sealed
    _leftover(tmp_path, "20240501T000000.000000Z-4242-000003", HEADER)  # no event: removed
    _leftover(tmp_path, "20240501T000000.000000Z-4242-000004", HEADER[:10])  # a torn header: removed
    (tmp_path / f"{OPEN_PREFIX}20240501T000000.000000Z-4242-000005").mkdir()  # died before creating its file
    sealed = recover(tmp_path)
    assert [folder.name for folder in sealed] == [f"{SEALED_PREFIX}20240501T000000.000000Z-4242-00000{n}" for n in (1, 2)]
    assert sorted(tmp_path.iterdir()) == sealed
    for folder in sealed:
        assert (folder / FILE_NAME).read_bytes() == complete
    assert recover(tmp_path) == []  # nothing left to do


def test_a_writer_opening_recovers_and_continues_in_a_new_file(tmp_path):
    _leftover(tmp_path, "20240501T000000.000000Z-4242-000001", HEADER + encode_lines([_row("e1")]) + b"e2,")
    with EventLog(tmp_path, EventLogSettings(max_age_seconds=NEVER)) as events:
        assert [folder.name for folder in _folders(tmp_path, SEALED_PREFIX)] == [
            f"{SEALED_PREFIX}20240501T000000.000000Z-4242-000001"]
        events.append([_row("e2")])
    assert sorted(r[0] for folder in _folders(tmp_path, SEALED_PREFIX) for r in _rows(folder)) == ["e1", "e2"]


def test_a_live_writers_file_is_never_recovered_even_from_its_own_process(tmp_path):
    with EventLog(tmp_path, EventLogSettings(max_age_seconds=NEVER)) as first:
        first.append([_row("e1")])
        with EventLog(tmp_path, EventLogSettings(max_age_seconds=NEVER)) as second:  # a second worker starting
            assert _folders(tmp_path, OPEN_PREFIX) == [first.open_folder]
            second.append([_row("e2")])
        first.append([_row("e3")])
        assert [r[0] for r in _rows(first.open_folder)] == ["e1", "e3"]
    assert sorted(r[0] for folder in _folders(tmp_path, SEALED_PREFIX) for r in _rows(folder)) == ["e1", "e2", "e3"]


WRITER = """
import sys, time
from pathlib import Path
from orchestration.ingest.event_log import EventLog, EventLogSettings
events = EventLog(Path(sys.argv[1]), EventLogSettings(max_age_seconds=3600))
events.open()
events.append([("e1", "u1", None, "i1", "view", "2024-05-01T12:30:00.000000Z", None, None)])
print("appended", flush=True)
time.sleep(600)
"""


def test_a_killed_writers_folder_is_recovered_once_it_is_gone(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout.readline().strip() == "appended"
        (folder,) = _folders(tmp_path, OPEN_PREFIX)
        assert f"-{writer.pid}-" in folder.name
        assert recover(tmp_path) == [] and folder.exists()  # its writer holds the lock
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    (sealed,) = recover(tmp_path)
    assert [r[0] for r in _rows(sealed)] == ["e1"] and not folder.exists()


FULL_DISK = """
import resource, sys
from pathlib import Path
from orchestration.ingest.event_log import EventLog, EventLogError, EventLogSettings, FILE_NAME
resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))  # Python ignores SIGXFSZ: a write past it fails (EFBIG)
events = EventLog(Path(sys.argv[1]), EventLogSettings(max_age_seconds=3600))
events.open()
row = ("e{}", "u1", None, "i1", "view", "2024-05-01T12:30:00.000000Z", None, None)
acknowledged = []
for number in range(20):
    try:
        events.append([tuple(v.format(number) if v else v for v in row)] * 2)
        acknowledged.append(number)
    except EventLogError as error:
        print("refused", number, error.__cause__.__class__.__name__)
        print("size", (events.open_folder / FILE_NAME).stat().st_size)
        print("acknowledged", *acknowledged)
        break
"""


def test_a_failed_write_is_refused_and_cut_back_so_no_torn_line_stays(tmp_path):
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    refused, size, acknowledged = (line.split() for line in out)
    assert refused[0] == "refused" and refused[2] == "OSError"
    (folder,) = _folders(tmp_path, OPEN_PREFIX)  # the writer exited without closing: as if killed
    content = (folder / FILE_NAME).read_bytes()
    assert len(content) == int(size[1]) <= 400 and content.endswith(b"\n")
    assert [r[0] for r in _rows(folder)] == [f"e{n}" for n in map(int, acknowledged[1:]) for _ in range(2)]
    assert int(refused[1]) == len(acknowledged) - 1 and os.path.getsize(folder / FILE_NAME) == len(content)


def test_the_writer_module_stays_free_of_the_web_stack():
    probe = textwrap.dedent("""
        import sys
        import orchestration.ingest.event_log
        print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'dagster', 'dbt'}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_come_from_the_environment_and_a_malformed_one_is_named_with_its_value():
    assert EventLogSettings.from_environment({}) == EventLogSettings()
    assert EventLogSettings.from_environment({"RECSYS_EVENTS_MAX_BYTES": " 1024 ", "RECSYS_EVENTS_MAX_AGE_SECONDS": "2.5",
                                              "RECSYS_EVENT_TYPES": "click=view"}) == EventLogSettings(1024, 2.5)
    assert EventLogSettings.from_environment({"RECSYS_EVENTS_MAX_BYTES": ""}) == EventLogSettings()  # blank: unset
    for name, value, expected in [
        ("RECSYS_EVENTS_MAX_BYTES", "16MB", "expected a whole number of bytes, at least 1"),
        ("RECSYS_EVENTS_MAX_BYTES", "0", "expected a whole number of bytes, at least 1"),
        ("RECSYS_EVENTS_MAX_BYTES", "1.5", "expected a whole number of bytes, at least 1"),
        ("RECSYS_EVENTS_MAX_BYTES", "nan", "expected a whole number of bytes, at least 1"),
        ("RECSYS_EVENTS_MAX_AGE_SECONDS", "-1", "expected a number of seconds above 0"),
        ("RECSYS_EVENTS_MAX_AGE_SECONDS", "inf", "expected a number of seconds above 0"),
        ("RECSYS_EVENTS_MAX_AGE_SECONDS", "a minute", "expected a number of seconds above 0"),
    ]:
        with pytest.raises(EventSettingError) as error:
            EventLogSettings.from_environment({name: value})
        assert str(error.value).startswith(f"{name}={value!r} is not valid; {expected}")
        assert "\n" not in str(error.value)
    with pytest.raises(EventSettingError, match="RECSYS_EVENTS_MAX_AGE is not a setting of the events log; "
                                                "expected one of RECSYS_EVENTS_MAX_BYTES, RECSYS_EVENTS_MAX_AGE_SECONDS"):
        EventLogSettings.from_environment({"RECSYS_EVENTS_MAX_AGE": "60"})


@pytest.mark.parametrize("name, value", [("RECSYS_EVENTS_MAX_BYTES", "lots"), ("RECSYS_EVENTS_MAX_AGE_SECONDS", "0"),
                                         ("RECSYS_EVENT_TYPES", "click")])
def test_recsys_serve_stops_with_one_line_naming_a_malformed_events_setting(name, value, monkeypatch, tmp_path, capsys):
    from orchestration.apps.cli import main

    monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))  # the command sets it: restored after the test
    monkeypatch.delenv("RECSYS_API_TOKEN", raising=False)
    monkeypatch.delenv("RECSYS_API_TOKENS", raising=False)
    assert main(["--home", str(tmp_path), "serve", "--port", "1"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("recsys serve: ") and "\n" not in message and "Traceback" not in message
    assert name in message and repr(value) in message and "expected" in message
    assert not (tmp_path / "landing").exists()  # stopped before anything was opened
