"""Where a command's CPU time goes, thread by thread: for the batch engine on a GPU host, whose 16 cores were
95-99 % busy in session 24's two-engine runs, this says which threads spend them (issue 17).

Runs the command, samples every thread of it and of its descendant processes every 0.2 s (user + system time
from /proc/<pid>/task/<tid>/stat; Linux only), names the Python threads with ``py-spy dump`` once a second, and
prints CPU seconds by process and thread name, in all and per image, and the whole machine's busy share while
the command ran. Threads with no Python name are native, shown with the OS's name for them: CUDA's driver threads
have their own (cuda-EvtHandlr, ...); OpenMP's team and other unnamed ones carry the process's (python3).

    python scripts/thread_cpu.py --images 2000 -- python -m matting.bench --batch --device cuda --count 2000

Every process's start-up (imports, the model, CUDA) is in those seconds too. To leave it out, profile a short run
with ``--save`` and subtract it from a long one with ``--minus``: the rows are then the long run's extra CPU per
extra image.

    python scripts/thread_cpu.py --images 200 --save short.json -- python -m matting.bench ... --count 200
    python scripts/thread_cpu.py --images 2000 --minus short.json -- python -m matting.bench ... --count 2000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.bench.batch import MachineCPU  # noqa: E402

SAMPLE_S = 0.2
NAME_EVERY_S = 1.0
DUMP_THREAD = re.compile(r'Thread (\d+) \(\w+\): "([^"]*)"')


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    children[int(stat.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except OSError:   # gone meanwhile
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def process_kind(pid: int) -> str:
    """What a process of a batch run is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline") as cmdline:
            line = cmdline.read().replace("\0", " ")
    except OSError:
        return "?"
    for module, kind in (("batch_encode", "encoder"), ("batch_engine_helper", "engine"), ("ray", "ray")):
        if module in line:
            return kind
    return "main" if "python" in line else line[:30]


def cpu_seconds(stat_path: str) -> tuple[float, str] | None:
    """(CPU seconds (user + system) so far, the OS's name) from a /proc stat file of a process or a thread; None
    when it is gone."""
    try:
        with open(stat_path) as stat:
            comm, _, rest = stat.read().partition("(")[2].rpartition(")")
        fields = rest.split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), comm
    except (OSError, IndexError, ValueError):
        return None


def process_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` so far, its threads that have ended included (None when gone)."""
    seconds = cpu_seconds(f"/proc/{pid}/stat")
    return None if seconds is None else seconds[0]


def thread_seconds(pid: int) -> dict[int, tuple[float, str]]:
    """(CPU seconds so far, the OS's name for it) of each thread of ``pid``. The OS names only some native threads
    (CUDA's, for one); Python's and OpenMP's carry the process's name."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    found = {int(tid): cpu_seconds(f"/proc/{pid}/task/{tid}/stat") for tid in tids}
    return {tid: seconds for tid, seconds in found.items() if seconds is not None}


def python_thread_names(spy: str, pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from py-spy's dump of ``pid`` (empty when it cannot)."""
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                              timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(tid): name for tid, name in DUMP_THREAD.findall(dump)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, required=True, help="images the command processes (for per image)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="py-spy, to name threads")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="write this run's CPU seconds by process and thread (JSON)")
    parser.add_argument("--minus", type=Path, help="a shorter run's --save: show this run's CPU beyond it, per "
                                                   "image beyond its images (start-up left out)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    seconds: dict[tuple[int, int], float] = {}
    os_names: dict[tuple[int, int], str] = {}
    whole: dict[int, float] = {}   # per process, ended threads included
    kinds: dict[int, str] = {}
    names: dict[tuple[int, int], str] = {}
    with MachineCPU() as machine:
        proc = subprocess.Popen(command)
        named_at = 0.0
        while proc.poll() is None:
            pids = descendants(proc.pid)
            for pid in pids:
                kinds.setdefault(pid, process_kind(pid))
                total = process_seconds(pid)
                if total is not None:
                    whole[pid] = total
                for tid, (s, comm) in thread_seconds(pid).items():
                    seconds[(pid, tid)], os_names[(pid, tid)] = s, comm
            if time.monotonic() - named_at > NAME_EVERY_S:
                named_at = time.monotonic()
                for pid in pids:
                    if kinds[pid] in ("main", "engine"):
                        names.update({(pid, tid): name
                                      for tid, name in python_thread_names(args.py_spy, pid).items()})
            time.sleep(SAMPLE_S)
    groups: collections.Counter = collections.Counter()
    for (pid, tid), s in seconds.items():
        kind = kinds.get(pid, "?")
        name = names.get((pid, tid)) or (f"(native: {os_names.get((pid, tid), '?')})" if kind in ("main", "engine")
                                         else "")
        groups[(kind, re.sub(r"[-_]\d+$", "", name))] += s   # the threads of one pool together
    for pid, total in whole.items():   # threads that ended between two samples, and their last 0.2 s
        unseen = total - sum(s for (p, _), s in seconds.items() if p == pid)
        if unseen > 0:
            groups[(kinds.get(pid, "?"), "(ended between samples)")] += unseen
    if args.save:
        args.save.write_text(json.dumps({"images": args.images,
                                         "groups": [[kind, name, s] for (kind, name), s in groups.items()]}))
    images, what = args.images, "(start-up included)"
    if args.minus:
        shorter = json.loads(args.minus.read_text())
        images -= shorter["images"]
        if images <= 0:
            raise SystemExit(f"--minus {args.minus} has {shorter['images']} images, this run {args.images}: "
                             "the shorter run goes in --minus")
        groups.subtract({(kind, name): s for kind, name, s in shorter["groups"]})
        what = f"beyond the {shorter['images']} images of {args.minus} (start-up left out)"
    total = sum(groups.values())
    busy = "?" if machine.busy is None else f"{machine.busy:.0%}"
    print(f"\nCPU seconds in all: {total:.2f}, {1000 * total / images:.2f} ms per image ({images} images) {what}; "
          f"the machine was {busy} busy from start to end")
    print("| process | threads | CPU s | ms per image |\n| --- | --- | ---: | ---: |")
    for (kind, name), s in groups.most_common(args.top):
        print(f"| {kind} | {name} | {s:.2f} | {1000 * s / images:.2f} |")


if __name__ == "__main__":
    main()
