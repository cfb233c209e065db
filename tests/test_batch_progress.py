"""matting/batch_progress.py: the command line's progress line (bar, counts, speed, time left, failures)."""

from __future__ import annotations

import io

from matting.batch_progress import BAR_WIDTH, Progress, _clock


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_clock_reads_minutes_and_seconds_then_hours():
    assert [_clock(s) for s in (0, 59.4, 59.6, 61, 3599, 3600, 3661, 36000)] == \
        ["00:00", "00:59", "01:00", "01:01", "59:59", "1:00:00", "1:01:01", "10:00:00"]


def test_the_line_shows_the_bar_counts_speed_time_left_and_failures():
    progress = Progress(io.StringIO())
    progress._first_processed = (100.0, 2)   # 2 images had gone through the network at t = 100 s
    line = progress._line(10, 40, 12, 0, now=105.0)     # then 10 more in 5 s: 2 img/s, 30 left: 15 s
    assert line == "[" + "#" * 6 + "." * (BAR_WIDTH - 6) + "] 10/40  25% 2.0 img/s ETA 00:15"
    assert progress._line(40, 40, 42, 3, now=120.0).endswith("] 40/40 100% 2.0 img/s ETA --:--, 3 failed")


def test_no_speed_before_two_images_have_gone_through_the_network():
    progress = Progress(io.StringIO())
    assert progress._line(0, 5, 0, 0, now=1.0) == "[" + "." * BAR_WIDTH + "] 0/5   0% -- img/s ETA --:--"
    progress._first_processed = (1.0, 1)
    assert progress._rate(1, now=2.0) == 0.0 and progress._rate(3, now=1.0) == 0.0
    assert progress._rate(5, now=3.0) == 2.0


def test_no_speed_from_a_burst_in_the_first_second():
    """Results that arrive together (a Ray block) would otherwise show thousands of images a second."""
    progress = Progress(io.StringIO())
    progress._first_processed = (10.0, 1)
    assert progress._rate(5, now=10.9) == 0.0
    assert progress._rate(5, now=11.0) == 4.0
    assert Progress(io.StringIO())._line(0, 0, 0, 0, now=1.0).startswith("[" + "#" * BAR_WIDTH + "] 0/0 100%")


def test_skipped_images_do_not_count_toward_the_speed():
    """The rate starts from the first image that went through the network, not from the start."""
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    progress.update(5, 10, 0, 0)     # five skipped: nothing processed yet
    assert progress._first_processed is None
    progress.update(6, 10, 1, 0)
    assert progress._first_processed is not None and progress._first_processed[1] == 1


def test_a_log_gets_plain_lines_at_most_every_interval_and_always_the_last():
    stream = io.StringIO()
    progress = Progress(stream, interval=3600.0)
    for i in range(1, 5):
        progress.update(i, 4, i, 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[") and " 1/4 " in lines[0] and " 4/4 " in lines[1]
    assert "\r" not in stream.getvalue()


def test_the_first_line_is_drawn_even_on_a_machine_up_for_less_than_the_interval(monkeypatch):
    """perf_counter counts from boot on Linux: a machine up for 5 s once printed nothing until the interval had
    passed since boot (caught on a freshly started GPU machine)."""
    import matting.batch_progress as batch_progress

    stream = io.StringIO()
    progress = Progress(stream, interval=10.0)
    monkeypatch.setattr(batch_progress.time, "perf_counter", lambda: 5.0)
    progress.update(1, 4, 1, 0)
    progress.update(2, 4, 2, 0)   # within the interval: not drawn
    assert [line.split("]")[1][:5] for line in stream.getvalue().splitlines()] == [" 1/4 "]


def test_a_terminal_line_rewrites_itself_and_notices_print_above_it():
    term = Terminal()
    progress = Progress(term, interval=0.0)
    progress.update(1, 2, 1, 0)
    progress.write("a.jpg: 16-bit image reduced to 8 bits")
    progress.update(2, 2, 2, 0)
    progress.close()
    text = term.getvalue()
    first = text.index("\r[")
    assert text.index("a.jpg: 16-bit image reduced to 8 bits\n") > first   # the notice came after the bar...
    assert "\r" + " " * len(text[first + 1:].split("\r")[0]) + "\r" in text   # ...which it cleared first
    assert text.endswith("\n") and text.count("\r[") == 2


def test_a_disabled_display_writes_nothing_but_messages():
    stream = io.StringIO()
    progress = Progress(stream, enabled=False, interval=0.0)
    progress.update(1, 1, 1, 0, force=True)
    progress.close()
    assert stream.getvalue() == ""
    progress.write("kept")
    assert stream.getvalue() == "kept\n"


def test_terminals_redraw_often_logs_seldom_and_a_stream_without_isatty_is_a_log():
    assert Progress(Terminal()).interval == 0.1 and Progress(io.StringIO()).interval == 10.0

    class Pipe:   # no isatty at all: treated as a log, no carriage returns
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    pipe = Pipe()
    progress = Progress(pipe)
    assert not progress.tty and progress.interval == 10.0
    progress.update(1, 1, 1, 0)
    assert pipe.text.startswith("[") and "\r" not in pipe.text


def test_an_interval_of_zero_prints_every_update():
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    for i in range(1, 5):
        progress.update(i, 4, i, 0)
    assert len(stream.getvalue().splitlines()) == 4


def test_a_terminal_pads_a_shorter_line_and_clears_only_what_it_drew():
    term = Terminal()
    progress = Progress(term, interval=0.0)
    progress.write("first notice")            # nothing drawn yet: no clearing sequence before it
    assert term.getvalue() == "first notice\n"
    progress.update(1, 1000, 1, 7)           # ", 7 failed" makes this line longer than the next
    long = term.getvalue().split("\r")[-1]
    progress.update(2, 1000, 1, 0)
    short = term.getvalue().split("\r")[-1]
    assert short.endswith(" ") and len(short) == len(long) and not short.startswith(" ")
    progress.write("a")
    progress.write("b")                       # the bar was cleared once; the second notice clears nothing
    assert term.getvalue().endswith("\r" + " " * len(short.rstrip()) + "\ra\nb\n")
    progress.update(3, 1000, 2, 0)
    progress.close()
    progress.write("after")
    assert term.getvalue().endswith("\nafter\n") and not term.getvalue().endswith("\r\nafter\n"), \
        "closed: the bar ended its line, and nothing is cleared before a later message"


def test_closing_a_log_adds_nothing():
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    progress.update(1, 2, 1, 0)
    before = stream.getvalue()
    progress.close()
    assert stream.getvalue() == before


def test_the_clock_counts_minutes_within_an_hour():
    assert _clock(7199) == "1:59:59" and _clock(3600 + 61) == "1:01:01" and _clock(6600) == "1:50:00"


def test_a_status_shows_on_a_terminal_until_the_bar_replaces_it_and_never_in_a_log():
    """What a run does before its first image ("loading the model...") is one rewritten terminal line; a longer
    status is padded away by the shorter bar; a log or --no-progress gets none of it."""
    term = Terminal()
    progress = Progress(term, interval=0.0)
    progress.status("listing the inputs, all one hundred thousand of them...")
    status_width = len(term.getvalue()) - 1
    progress.update(0, 5, 0, 0, force=True)
    bar = term.getvalue().split("\r")[-1]
    assert bar.startswith("[") and len(bar) == status_width and "listing" not in bar
    progress.write("failed: a.jpg: broken")   # clears the bar (the status's tail was padded away already)
    assert term.getvalue().endswith("\r" + " " * len(bar.rstrip()) + "\rfailed: a.jpg: broken\n")

    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        quiet = Progress(stream, enabled=enabled)
        quiet.status("loading the model...")
        quiet.close()
        assert stream.getvalue() == ""
