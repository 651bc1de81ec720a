"""MicroBatcher: concurrent calls combined into one run, each caller getting its own result or its own error."""

import threading

import pytest

from orchestration.serving.batching import MicroBatcher


def test_waiting_calls_run_together_and_each_gets_its_own_result():
    started, release = threading.Event(), threading.Event()
    runs = []

    def run(items):
        runs.append(list(items))
        if len(runs) == 1:  # hold the first run until the others queue behind it
            started.set()
            release.wait(5)
        return [item * 10 for item in items]

    batcher = MicroBatcher(run)
    results = {}

    def call(item):
        results[item] = batcher.submit(item)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 5:  # all five queued behind the running call
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert results == {i: i * 10 for i in range(6)}
    assert runs[0] == [0] and sorted(runs[1]) == [1, 2, 3, 4, 5] and len(runs) == 2


def test_a_failing_item_fails_only_its_own_call():
    def run(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    assert MicroBatcher(run).submit("ok") == "OK"  # nothing else queued: a lone call runs alone
    errors, results = [], []
    gate = threading.Lock()
    gate.acquire()

    def blocked_run(items):
        with gate:
            return run(items)

    batcher = MicroBatcher(blocked_run)
    threads = [threading.Thread(target=lambda item=item: _collect(batcher, item, results, errors))
               for item in ("a", "bad", "c")]
    for thread in threads:
        thread.start()
    while len(batcher._queue) + (1 if batcher._running.locked() else 0) < 3:
        threading.Event().wait(0.01)
    gate.release()
    for thread in threads:
        thread.join(5)
    assert sorted(results) == ["A", "C"] and [str(e) for e in errors] == ["bad item"]


def _collect(batcher, item, results, errors):
    try:
        results.append(batcher.submit(item))
    except ValueError as error:
        errors.append(error)


def test_batches_are_capped():
    sizes = []
    batcher = MicroBatcher(lambda items: sizes.append(len(items)) or list(items), max_batch=2)
    with batcher._running:  # queue five while a run is under way
        threads = [threading.Thread(target=batcher.submit, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        while len(batcher._queue) < 5:
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(5)
    assert sum(sizes) == 5 and max(sizes) <= 2


@pytest.mark.parametrize("results", [[], [1, 2]])
def test_a_run_must_answer_every_item_once(results):
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: results).submit("x")
