"""A process's runs due on one second begin before any of them finishes (bounded)."""

from __future__ import annotations

import threading
import time

from chalicelib.entrypoints.start_gates import SecondGates


def test_a_finish_waits_until_every_run_of_its_second_has_begun() -> None:
    gates = SecondGates(wait_s=5.0)
    first, second = gates.hold(100.2), gates.hold(100.9)
    other = gates.hold(101.0)  # another second: not waited for
    first.begun()
    waited = threading.Event()

    def finish() -> None:
        first.wait()
        waited.set()

    t = threading.Thread(target=finish)
    t.start()
    assert not waited.wait(0.2)  # `second` has not begun
    second.begun()
    assert waited.wait(2.0)
    t.join()
    other.begun()
    other.wait()  # alone on its second: no wait


def test_the_wait_is_bounded_and_begun_counts_once() -> None:
    gates = SecondGates(wait_s=0.1)
    a, b = gates.hold(5.0), gates.hold(5.5)
    a.begun()
    a.begun()  # a run tells once; the second call is not b's
    started = time.monotonic()
    a.wait()
    assert 0.09 <= time.monotonic() - started < 1.0
    b.begun()
    a.wait()  # now every run has begun: at once
