"""The jobs of a batch run as its engines take them, while the rest are still being planned.

Planning (the outputs' names, what already exists, the record of outputs, the link guard) costs some 20 to 60 us a
photo: 36-66 ms for 2000 photos on the H200 host, seconds for a catalogue, all of it before the first image when
done up front. run_batch plans in a thread instead (``fill``), and the engines take each job as soon as it is
planned (``take``). What the plan settles by itself (an input that cannot be read, outputs already made the same
way) goes to whoever reads the run's results (``attach``), in the order planned; every such result is handed over
before the feed says it has ended, so a run that has taken its last job has also been given every settled result.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator


class JobFeed:
    """Planned jobs, taken in plan order (jobs given back first), and the results the plan settled."""

    def __init__(self, items: int):
        self._cond = threading.Condition()
        self._ready: deque = deque()          # planned, not taken
        self._settled: list = []              # results settled by the plan, not yet handed over
        self._deliver: Callable | None = None
        self._items = items                   # what the plan goes through
        self._planned = 0                     # how many of them it has
        self._jobs = 0                        # jobs among them
        self._stop = threading.Event()
        self.ended = False
        self.error: BaseException | None = None

    @classmethod
    def of(cls, jobs: Iterable) -> "JobFeed":
        """A feed of jobs planned already."""
        jobs = list(jobs)
        feed = cls(len(jobs))
        feed.fill((job, None) for job in jobs)
        return feed

    # ------------------------------------------------------------ the planner's side
    def fill(self, steps: Iterable[tuple], cancel: threading.Event | None = None) -> None:
        """Take the plan's steps, each (job, None) or (None, settled result), until it ends, ``cancel`` is set or
        ``stop`` is called. An error of the plan is kept in ``error`` and ends the feed (run_batch raises it)."""
        try:
            for job, result in steps:
                with self._cond:
                    self._planned += 1
                    if job is not None:
                        self._jobs += 1
                        self._ready.append(job)
                        self._cond.notify_all()
                    elif self._deliver is not None:
                        self._deliver(result)
                    else:
                        self._settled.append(result)
                if self._stop.is_set() or (cancel is not None and cancel.is_set()):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to run_batch's thread
            self.error = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def stop(self) -> None:
        """The planner stops after the step it is at (the run has ended or failed)."""
        self._stop.set()

    # ------------------------------------------------------------ the run's side
    def attach(self, deliver: Callable | None) -> None:
        """Settled results go to ``deliver`` from now on (those held so far first); None holds them again."""
        with self._cond:
            self._deliver = deliver
            if deliver is not None:
                for result in self._settled:
                    deliver(result)
                self._settled.clear()

    def settled(self) -> list:
        """The settled results held (none are while a run is attached), and none after."""
        with self._cond:
            held, self._settled = self._settled, []
            return held

    def take(self, count: int, stopping: Callable[[], bool] = lambda: False) -> list:
        """Up to ``count`` jobs, waiting until that many are planned or the plan has ended; [] once every job is
        taken and the plan has ended, or when ``stopping()`` says so."""
        with self._cond:
            while len(self._ready) < count and not self.ended:
                if stopping():
                    return []
                self._cond.wait(0.05)
            if stopping():
                return []
            return [self._ready.popleft() for _ in range(min(count, len(self._ready)))]

    def give_back(self, jobs) -> None:
        """Jobs taken and not done (an engine that died): taken again first, in their order."""
        with self._cond:
            self._ready.extendleft(sorted(jobs, key=lambda job: job.order, reverse=True))
            self._cond.notify_all()

    def wait_for_job(self, timeout: float) -> bool:
        """True once a job is ready or the plan has ended (else after ``timeout``)."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: self._ready or self.ended, timeout))

    def wait_for_end(self, timeout: float) -> bool:
        """True once the plan has ended (else after ``timeout``)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.ended, timeout)

    def has_jobs(self) -> bool:
        """Whether the plan has made any job so far."""
        with self._cond:
            return self._jobs > 0

    def left(self) -> int:
        """Jobs not taken, counting every item not yet planned as one (the engines' chunks shrink by it)."""
        with self._cond:
            return len(self._ready) + self._items - self._planned

    def __len__(self) -> int:
        """The jobs planned (all of them once the plan has ended)."""
        with self._cond:
            return self._jobs


def each_job(jobs, stopping: Callable[[], bool]) -> Iterator:
    """A run's jobs one at a time: a JobFeed's as they are planned (none more once ``stopping()``), any other
    iterable's as it gives them."""
    if not isinstance(jobs, JobFeed):
        yield from jobs
        return
    while taken := jobs.take(1, stopping):
        yield taken[0]
