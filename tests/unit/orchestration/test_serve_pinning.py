"""``recsys serve --workers N`` keeps each worker to a core: claims on files, one per live worker."""

import os
import subprocess
import sys
import textwrap

import pytest

from orchestration.serving.server import add_serve_arguments, cpu_quota, pins_workers

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this system cannot pin processes")

_WORKER = textwrap.dedent("""
    import os, sys
    from orchestration.serving.server import pin_to_free_core
    os.sched_setaffinity(0, {int(core) for core in sys.argv[2].split(",")})  # the cores a server may use
    core = pin_to_free_core(sys.argv[1])
    threads = {frozenset(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    print(core, sorted(next(iter(threads))) if len(threads) == 1 else "threads differ", flush=True)
    sys.stdin.read()  # holds its claim until the test closes stdin
""")


def _worker(folder, cores):
    process = subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), ",".join(map(str, sorted(cores)))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    core, pinned = process.stdout.readline().split(" ", 1)
    return process, int(core), pinned.strip()


def test_workers_take_free_cores_and_a_replacement_takes_the_dead_ones(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    cores = set(cores[:2])
    first, first_core, first_pinned = _worker(tmp_path, cores)
    second, second_core, second_pinned = _worker(tmp_path, cores)
    third, third_core, _ = _worker(tmp_path, cores)  # more workers than cores: round robin
    try:
        assert {first_core, second_core} == cores
        assert first_pinned == f"[{first_core}]" and second_pinned == f"[{second_core}]"  # every thread
        assert third_core == first_core
        first.kill()
        first.wait()
        replacement, replacement_core, _ = _worker(tmp_path, cores)
        replacement.stdin.close()
        replacement.wait()
        assert replacement_core == first_core  # the dead worker's claim was released and taken again
    finally:
        for process in (first, second, third):
            process.kill()
            process.wait()


def test_pinning_is_on_unless_switched_off():
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args([]).pinning is True
    assert parser.parse_args(["--no-pinning"]).pinning is False


def test_a_containers_cpu_limit_is_read_from_its_cgroup(tmp_path):
    assert cpu_quota(tmp_path) is None  # no cgroup files: no limit known
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert cpu_quota(v1) == 4.0


def test_workers_are_pinned_only_where_they_fill_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert not pins_workers(1, tmp_path)
    assert not pins_workers(2, tmp_path)  # a server sharing the machine stays free
    assert pins_workers(4, tmp_path) and pins_workers(6, tmp_path)
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # a 2-core limit: the 4 cores seen are the host's
    assert not pins_workers(4, tmp_path)
