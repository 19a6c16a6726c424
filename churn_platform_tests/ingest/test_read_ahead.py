"""The ingest's read-ahead: order, at most one batch read ahead, errors and early stops."""

import threading
import time

import pytest

from churn_platform.ingest.read_ahead import DeferredLog, read_ahead


def test_batches_come_in_order_and_the_reader_keeps_one_batch_ahead():
    read = []

    def batches():
        for n in range(4):
            read.append(n)
            yield n

    written = []
    for batch in read_ahead(batches()):
        # While batch n is written, batch n+1 is read, and never the one after it.
        ahead = min(batch + 2, 4)
        deadline = time.monotonic() + 5
        while len(read) < ahead and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # room for a reader running further ahead to show itself
        assert read == list(range(ahead)), f"writing {batch}, read {read}"
        written.append(batch)
    assert written == [0, 1, 2, 3]


def test_an_error_of_the_reader_is_raised_in_the_caller_after_the_batches_before_it():
    def batches():
        yield "day 1"
        raise OSError("S3 went away")

    got = []
    with pytest.raises(OSError, match="S3 went away"):
        for batch in read_ahead(batches()):
            got.append(batch)
    assert got == ["day 1"]


def test_a_caller_that_stops_early_leaves_no_reader_behind():
    def batches():
        n = 0
        while True:  # endless: only the caller's stop ends it
            yield n
            n += 1

    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="insert failed"):
        for batch in read_ahead(batches()):
            if batch == 2:
                raise RuntimeError("insert failed")
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "ingest-read-ahead"]


def test_deferred_log_replays_in_order_on_the_callers_logger():
    class Log:
        def __init__(self):
            self.lines = []

        def warning(self, message):
            self.lines.append(("warning", message))

        def error(self, message):
            self.lines.append(("error", message))

    deferred, log = DeferredLog(), Log()
    deferred.warning("ignoring a key")
    deferred.error("2024-01-02: bad file")
    deferred.replay(log)
    deferred.replay(log)  # replayed once
    assert log.lines == [("warning", "ignoring a key"), ("error", "2024-01-02: bad file")]
