"""Summarise py-spy's collapsed stacks (``--format raw``): the busiest threads, and the functions that take the
most samples inclusive (anywhere on the stack) and exclusive (on top).

    python scripts/summarise_profile.py spy_all.txt [--top 25] [--match gradio]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """'fn (path/to/module.py:12)' -> 'fn (module.py)'."""
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['name']} ({Path(match['file']).name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=None, help="only stacks that contain this text")
    args = parser.parse_args()
    threads, inclusive, exclusive = Counter(), Counter(), Counter()
    total = 0
    for line in args.stacks.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or (args.match and args.match not in stack):
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[1] if len(frames) > 1 and frames[1].startswith("thread") else frames[0]] += n
        names = [short(f) for f in frames[2:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            exclusive[names[-1]] += n
    print(f"{total} samples\n\nthreads:")
    for name, n in threads.most_common(10):
        print(f"  {100 * n / total:5.1f} %  {name}")
    for title, table in (("inclusive", inclusive), ("exclusive", exclusive)):
        print(f"\n{title}:")
        for name, n in table.most_common(args.top):
            print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
