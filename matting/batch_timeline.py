"""Where a batch's time goes over the run: each stage's busy share of its threads, slice by slice (the bench's
``--profile``). The stage table of a whole run says which stage limits on average; this says when: a stage that
is idle at the start and saturated at the end, or a network that waits in bursts, shows here and not there.

    timeline = Timeline()
    summary = run_batch(inputs, out, timeline=timeline)
    print(timeline.markdown(summary.stage_threads, slices=10))
"""

from __future__ import annotations

import threading


class Timeline:
    """Busy intervals (stage, start, end) in perf_counter seconds, added from any thread."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def add(self, stage: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.append((stage, start, end))

    def shares(self, threads: dict[str, int], slices: int = 10) -> list[tuple[float, float, dict[str, float]]]:
        """(slice start, slice end, {stage: busy seconds / (slice length x the stage's threads)}), the times from
        the first span's start; stages in the order they first appear."""
        if not self.spans or slices < 1:
            return []
        t0 = min(start for _, start, _ in self.spans)
        t1 = max(end for _, _, end in self.spans)
        width = max(t1 - t0, 1e-9) / slices
        stages = list(dict.fromkeys(stage for stage, _, _ in self.spans))
        rows = []
        for i in range(slices):
            a, b = t0 + i * width, t0 + (i + 1) * width
            busy = dict.fromkeys(stages, 0.0)
            for stage, start, end in self.spans:
                busy[stage] += max(0.0, min(end, b) - max(start, a))
            rows.append((a - t0, b - t0, {s: busy[s] / (width * threads.get(s, 1)) for s in stages}))
        return rows

    def markdown(self, threads: dict[str, int], slices: int = 10) -> str:
        rows = self.shares(threads, slices)
        if not rows:
            return "(no stage ran)"
        stages = list(rows[0][2])
        lines = ["| seconds | " + " | ".join(f"{s} ({threads.get(s, 1)})" for s in stages) + " |",
                 "| --- |" + " ---: |" * len(stages)]
        for a, b, share in rows:
            lines.append(f"| {a:.1f}-{b:.1f} | " + " | ".join(f"{share[s]:.0%}" for s in stages) + " |")
        return "\n".join(lines)
