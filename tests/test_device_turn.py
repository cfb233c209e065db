"""The GPU's turn (matting/device_turn.py): one holder at a time; a page's preview goes before the heavy work."""

from __future__ import annotations

import threading
import time

from matting.device_turn import DeviceTurn


def waiting(turn: DeviceTurn, count: int, timeout: float = 5.0) -> None:
    """Until ``count`` threads wait in ``turn``'s queues."""
    deadline = time.monotonic() + timeout
    while len(turn._first) + len(turn._normal) < count:
        assert time.monotonic() < deadline, "the threads never queued"
        time.sleep(0.001)


def take(turn: DeviceTurn, order: list, name: str, first: bool) -> None:
    """Take ``turn`` (a preview's ``first`` queue, or the normal one) and note ``name`` in ``order``."""
    with (turn.first() if first else turn):
        order.append(name)


def test_a_preview_waiting_goes_before_the_heavy_work_and_each_queue_keeps_its_order():
    turn, order = DeviceTurn(heavy_wait_s=60), []   # (no heavy job waits long enough to go first here)
    turn.acquire()   # the turn is busy while they arrive, one after another
    threads = []
    for k, (name, first) in enumerate([("network 1", False), ("preview 1", True), ("download", False),
                                       ("preview 2", True)]):
        threads.append(threading.Thread(target=take, args=(turn, order, name, first)))
        threads[-1].start()
        waiting(turn, k + 1)
    turn.release()
    for thread in threads:
        thread.join(5)
    assert order == ["preview 1", "preview 2", "network 1", "download"]


def test_one_holder_at_a_time():
    turn, inside, most = DeviceTurn(), [0], [0]

    def work() -> None:
        for k in range(400):   # both queues in turn
            with (turn.first() if k % 2 else turn):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.0001)   # another thread would get in here, were the turn not exclusive
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1 and not turn._held   # and free again at the end


def test_a_turn_that_raises_is_handed_on():
    turn = DeviceTurn()
    try:
        with turn.first():
            raise ValueError("a failed render")
    except ValueError:
        pass
    assert turn._held is False
    with turn:
        assert turn._held


def test_heavy_work_that_waited_long_enough_goes_before_further_previews():
    turn, order = DeviceTurn(heavy_wait_s=0.1), []
    turn.acquire()
    heavy = threading.Thread(target=take, args=(turn, order, "network", False))
    heavy.start()
    waiting(turn, 1)
    previews = [threading.Thread(target=take, args=(turn, order, f"preview {k}", True)) for k in range(3)]
    for k, thread in enumerate(previews):
        thread.start()
        waiting(turn, k + 2)
    time.sleep(0.15)   # the network run has now waited longer than heavy_wait_s
    turn.release()
    for thread in [heavy, *previews]:
        thread.join(5)
    assert order == ["network", "preview 0", "preview 1", "preview 2"]
