"""The scoring turn goes to an explanation before a ranking before a background chunk, then by arrival."""

from __future__ import annotations

import threading
import time

from coreperturb.serve._turns import Kind, Turns


def _queue_up(turns: Turns, kinds: list[tuple[str, Kind]], order: list[str]) -> list[threading.Thread]:
    threads = []
    for name, kind in kinds:

        def work(name: str = name, kind: Kind = kind) -> None:
            with turns.hold(kind):
                order.append(name)

        t = threading.Thread(target=work)
        t.start()
        threads.append(t)
        deadline = time.time() + 10
        while turns.waiting() < len(threads):  # queued in this order
            assert time.time() < deadline
            time.sleep(0.001)
    return threads


def test_waiters_are_served_by_kind_then_by_arrival() -> None:
    turns = Turns()
    order: list[str] = []
    with turns.hold(Kind.RANKING):  # busy: everyone below queues
        threads = _queue_up(
            turns,
            [
                ("chunk", Kind.BACKGROUND),
                ("ranking 1", Kind.RANKING),
                ("pair 1", Kind.PAIR),
                ("ranking 2", Kind.RANKING),
                ("pair 2", Kind.PAIR),
            ],
            order,
        )
        assert order == []  # one holder at a time
    for t in threads:
        t.join(10)
    assert order == ["pair 1", "pair 2", "ranking 1", "ranking 2", "chunk"]
    assert turns.waiting() == 0


def test_a_turn_is_handed_on_when_its_holder_fails() -> None:
    turns = Turns()
    try:
        with turns.hold(Kind.PAIR):
            raise RuntimeError("scoring failed")
    except RuntimeError:
        pass
    done = threading.Event()

    def work() -> None:
        with turns.hold(Kind.RANKING):
            done.set()

    threading.Thread(target=work).start()
    assert done.wait(10)
