"""Command line: outputs, exit status (0 / 1 / 2 / 130), one stderr line per failure, resume, zips, progress."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import matting.pipeline
from matting.batch_outputs import MANIFEST_NAME as MANIFEST
from matting.cli import main

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48


@pytest.fixture(autouse=True)
def reuse_pipeline(monkeypatch, pipe):
    """The CLI builds a Pipeline per run; hand it the module's one unless a test asks for something else."""
    real = matting.pipeline.Pipeline

    def factory(**kwargs):
        if kwargs.get("device") in (None, "cpu") and kwargs.get("weights") is None and kwargs.get("model") == "u2netp":
            return pipe
        return real(**kwargs)

    monkeypatch.setattr(matting.pipeline, "Pipeline", factory)


def jpeg(path: Path, seed: int = 0, size=(W, H)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")
    return path


def cli(capsys, *argv) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv] + ["--no-progress"])
    return code, capsys.readouterr().err.splitlines()


def test_all_good_exits_0_and_writes_cutouts_and_alpha(capsys, tmp_path):
    a, b = jpeg(tmp_path / "a.jpg", 1), jpeg(tmp_path / "b.jpg", 2)
    code, err = cli(capsys, a, b, "-o", tmp_path / "out", "--alpha")
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != MANIFEST)
    assert written == ["a.png", "a_alpha.png", "b.png", "b_alpha.png"]
    assert Image.open(tmp_path / "out" / "a.png").mode == "RGBA"
    assert Image.open(tmp_path / "out" / "a_alpha.png").mode == "L"
    assert not [line for line in err if line.startswith("failed")]
    assert "2 done, 0 skipped, 0 failed" in err[-1]


def test_any_failure_exits_1_with_one_line_each(capsys, tmp_path):
    good = jpeg(tmp_path / "good.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("just some text\n" * 20)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg(tmp_path / "whole.jpg").read_bytes()[:200])
    code, err = cli(capsys, good, text, cut, "-o", tmp_path / "out")
    assert code == 1
    failures = [line for line in err if line.startswith("failed:")]
    assert len(failures) == 2
    assert any("notes.jpg" in line and "not an image" in line for line in failures)
    assert any("cut.jpg" in line for line in failures)
    assert (tmp_path / "out" / "good.png").is_file()


@pytest.mark.parametrize("extra", [
    ["--background", "not-a-colour"],
    ["--no-cutout"],
    ["--threshold", "7"],
    ["--device", "tpu"],
])
def test_usage_and_setup_errors_exit_2(capsys, tmp_path, extra):
    code, err = cli(capsys, jpeg(tmp_path / "a.jpg"), "-o", tmp_path / "out", *extra)
    assert code == 2
    assert err and err[-1].startswith("error:")


def test_output_that_is_a_file_exits_2(capsys, tmp_path):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    code, err = cli(capsys, jpeg(tmp_path / "a.jpg"), "-o", taken)
    assert code == 2 and "not a folder" in err[-1]


def test_bad_option_values_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(jpeg(tmp_path / "a.jpg")), "-o", str(tmp_path / "out"), "--batch-size", "0"])
    assert exit_info.value.code == 2


def test_rerun_skips_then_overwrite_redoes(capsys, tmp_path):
    src = tmp_path / "in"
    jpeg(src / "a.jpg", 1)
    jpeg(src / "b.jpg", 2)
    assert cli(capsys, src, "-o", tmp_path / "out")[0] == 0
    code, err = cli(capsys, src, "-o", tmp_path / "out")
    assert code == 0 and "0 done, 2 skipped, 0 failed" in err[-1] and "--overwrite" in err[-1]
    code, err = cli(capsys, src, "-o", tmp_path / "out", "--overwrite")
    assert code == 0 and "2 done, 0 skipped" in err[-1]


def test_glob_and_zip_in_zip_out_with_composites(capsys, tmp_path):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        buffer = io.BytesIO()
        Image.new("RGB", (W, H), (10, 200, 30)).save(buffer, "JPEG")
        zf.writestr("../evil.jpg", buffer.getvalue())
    jpeg(tmp_path / "loose" / "p.jpg")
    out = tmp_path / "result.zip"
    code, _ = cli(capsys, archive, str(tmp_path / "loose" / "*.jpg"), "-o", out, "--no-cutout",
                  "--background", "0,0,255", "--composite-format", "png")
    assert code == 0
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["evil_composite.png", "p_composite.png"]
        image = Image.open(io.BytesIO(zf.read("p_composite.png")))
        assert (image.mode, image.size) == ("RGB", (W, H))
    assert not (tmp_path.parent / "evil_composite.png").exists()


def test_progress_lines_when_not_a_terminal(capsys, tmp_path):
    code = main([str(jpeg(tmp_path / "a.jpg")), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0
    assert "1/1 100%" in err and "img/s" in err and "ETA" in err
    assert "\r" not in err  # plain lines for logs, no carriage returns


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_cleanly_exits_130_and_a_rerun_resumes(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    count = 30  # enough that a 16-core machine is still busy when the signal lands (10 were all done by then)
    for i in range(count):
        jpeg(src / f"p{i:02d}.jpg", i)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATTING_DEVICE": "cpu"}
    command = [sys.executable, "-m", "matting", str(src), "-o", str(out), "--no-progress"]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped early" in err
    written = sorted(out.glob("*.png"))
    assert 1 <= len(written) < count
    for path in written:
        assert Image.open(path).size == (W, H)  # every file on disk is complete
    rerun = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, timeout=120)
    assert rerun.returncode == 0
    assert f"{count - len(written)} done, {len(written)} skipped, 0 failed" in rerun.stderr


def test_a_terminal_ctrl_c_with_two_engines_stops_cleanly_and_a_rerun_resumes(tmp_path):
    """A Ctrl-C at a terminal reaches the whole foreground group (here: the group the command leads); the engine
    helpers run in sessions of their own (matting/helper_process.py) and stop when this process tells them."""
    src, out = tmp_path / "in", tmp_path / "out"
    count = 40
    for i in range(count):
        jpeg(src / f"p{i:02d}.jpg", i)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATTING_DEVICE": "cpu"}
    command = [sys.executable, "-m", "matting", str(src), "-o", str(out), "--no-progress", "--engines", "2"]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)   # as the terminal does: to the group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped early" in err and " 0 failed" in err, err
    written = sorted(out.glob("*.png"))
    assert 1 <= len(written) < count
    for path in written:
        assert Image.open(path).size == (W, H)
    rerun = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, timeout=120)
    assert rerun.returncode == 0
    assert f"{count - len(written)} done, {len(written)} skipped, 0 failed" in rerun.stderr


def test_the_summary_says_how_many_engines_took_part(capsys, tmp_path):
    images = [jpeg(tmp_path / f"p{i}.jpg", i) for i in range(3)]
    code, err = cli(capsys, *images, "-o", tmp_path / "out", "--engines", "2")
    assert code == 0 and "3 done" in err[-1]
    # the helper loads in the background: a run this short may end before it could join
    assert "of 2 engine processes" in err[-1] or "; 2 engine processes" in err[-1], err[-1]


def test_engines_and_ray_do_not_go_together(capsys, tmp_path):
    code, err = cli(capsys, jpeg(tmp_path / "a.jpg"), "-o", tmp_path / "out", "--engines", "2", "--ray")
    assert code == 2 and "--engines" in err[-1] and "--ray" in err[-1]


def test_resume_skips_only_outputs_made_the_same_way(capsys, tmp_path):
    """A rerun with other edge settings, --raw or a changed input redoes the work and says so; the same run
    again skips it; a matte from an earlier --alpha run that the new settings would make differently goes."""
    src, out = tmp_path / "in", tmp_path / "out"
    jpeg(src / "a.jpg", 1)
    jpeg(src / "b.jpg", 2)
    assert cli(capsys, src, "-o", out, "--alpha")[0] == 0
    first = (out / "a.png").read_bytes()
    code, err = cli(capsys, src, "-o", out, "--alpha")
    assert code == 0 and "0 done, 2 skipped" in err[-1]

    code, err = cli(capsys, src, "-o", out, "--feather", "2")     # other settings, no --alpha this time
    assert code == 0 and "2 done, 0 skipped" in err[-1]
    assert sum("redone" in line for line in err) == 2
    assert sum("removed" in line and "_alpha.png" in line for line in err) == 2
    assert not (out / "a_alpha.png").exists() and not (out / "b_alpha.png").exists(), "no stale matte"
    assert (out / "a.png").read_bytes() != first
    code, err = cli(capsys, src, "-o", out, "--feather", "2")
    assert code == 0 and "0 done, 2 skipped" in err[-1]

    code, err = cli(capsys, src, "-o", out, "--raw")
    assert code == 0 and "2 done, 0 skipped" in err[-1]
    jpeg(src / "a.jpg", 7)                                         # a changed photo under the same name
    os.utime(src / "a.jpg", ns=(1, 1))
    code, err = cli(capsys, src, "-o", out, "--raw")
    assert code == 0 and "1 done, 1 skipped" in err[-1] and any("a.jpg: redone" in line for line in err)


def test_resume_redoes_outputs_it_has_no_record_of(capsys, tmp_path):
    """An output file that this tool did not make (or made before it kept records) is redone, not trusted."""
    src, out = tmp_path / "in", tmp_path / "out"
    jpeg(src / "a.jpg", 1)
    out.mkdir()
    (out / "a.png").write_bytes(b"not our cutout")
    code, err = cli(capsys, src, "-o", out)
    assert code == 0 and "1 done, 0 skipped" in err[-1]
    assert Image.open(out / "a.png").mode == "RGBA"


def test_zip_resume_follows_the_settings_and_drops_stale_members(capsys, tmp_path):
    src, archive = tmp_path / "in", tmp_path / "out.zip"
    jpeg(src / "a.jpg", 1)
    assert cli(capsys, src, "-o", archive, "--alpha")[0] == 0
    code, err = cli(capsys, src, "-o", archive, "--alpha")
    assert code == 0 and "0 done, 1 skipped" in err[-1]
    code, err = cli(capsys, src, "-o", archive, "--erode", "-2")
    assert code == 0 and "1 done, 0 skipped" in err[-1]
    with zipfile.ZipFile(archive) as result:
        assert result.namelist() == ["a.png"], "the matte made with the old settings is not carried over"


def test_the_engine_flags_mean_the_same_in_every_command():
    """app.py, the CLI and the evaluation take the engine flags from one definition (matting/engine_flags.py):
    the same words give the same pipeline options and the same help."""
    from demo.launch import build_parser as app_parser
    from matting.cli import build_parser as cli_parser
    from matting.engine_flags import engine_options
    from matting.eval import build_parser as eval_parser

    flags = ["--device", "cpu", "--precision", "fp32", "--model", "u2netp", "--weights", "w.safetensors",
             "--max-side", "512"]
    parsed = [cli_parser().parse_intermixed_args(["a.jpg", "-o", "out", *flags]), app_parser().parse_args(flags),
              eval_parser().parse_args(["dataset", *flags])]
    options = [engine_options(args) for args in parsed]
    assert options[0] == options[1] == options[2] == dict(model="u2netp", weights=Path("w.safetensors"),
                                                          device="cpu", precision="fp32", max_side=512)

    def helps(parser):
        return {action.option_strings[0]: action.help for action in parser._actions
                if action.option_strings and action.option_strings[0] in flags}

    assert helps(cli_parser()) == helps(app_parser()) == helps(eval_parser()) and len(helps(cli_parser())) == 5


def test_the_reference_page_is_the_help_itself(monkeypatch):
    """docs/CLI.md shows `python -m matting --help` as it is (at 100 columns): a changed option or help text
    without its page fails here."""
    from matting.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")
    page = (Path(__file__).resolve().parents[1] / "docs" / "CLI.md").read_text(encoding="utf-8")
    shown = page.split("$ python -m matting --help\n", 1)[1].split("```", 1)[0]
    assert shown == build_parser().format_help()


def test_without_edge_flags_the_engine_defaults_apply_and_raw_turns_everything_off():
    """No edge flag: exactly the engine's default settings. --raw: EdgeSettings.raw(), whatever else is given."""
    from matting.cli import build_parser, edge_settings
    from matting.settings import EdgeSettings

    parse = build_parser().parse_intermixed_args
    assert edge_settings(parse(["a.jpg", "-o", "out"])) == EdgeSettings()
    assert edge_settings(parse(["a.jpg", "-o", "out", "--raw", "--feather", "3"])) == EdgeSettings.raw()
    flags = parse(["a.jpg", "-o", "out", "--threshold", "0.4", "--feather", "1.5", "--erode", "-2", "--no-refine",
                   "--no-decontaminate"])
    assert edge_settings(flags) == EdgeSettings(threshold=0.4, feather=1.5, erode=-2, refine=False,
                                                decontaminate=False)


@pytest.mark.parametrize("flags, kinds", [
    ([], ("cutout",)),
    (["--alpha"], ("cutout", "alpha")),
    (["--composite"], ("cutout", "composite")),
    (["--background", "#000000"], ("cutout", "composite")),   # a background implies a composite
    (["--no-cutout", "--alpha"], ("alpha",)),
    (["--no-cutout", "--background", "1,2,3", "--alpha"], ("alpha", "composite")),
])
def test_output_kinds_follow_the_flags(flags, kinds):
    from matting.cli import build_parser, output_kinds

    assert output_kinds(build_parser().parse_intermixed_args(["a.jpg", "-o", "out", *flags])) == kinds


def test_nothing_to_write_is_refused_with_what_to_add():
    from matting.cli import build_parser, output_kinds
    from matting.errors import MattingError

    with pytest.raises(MattingError, match="^nothing to write: --no-cutout needs --alpha or --composite$"):
        output_kinds(build_parser().parse_intermixed_args(["a.jpg", "-o", "out", "--no-cutout"]))


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--workers", "two"], "argument --workers: not a whole number: 'two'"),
    (["--workers", "-3"], "argument --workers: must be at least 1, got -3"),
    ([], "the following arguments are required: -o/--output"),
])
def test_bad_counts_and_missing_output_are_named(capsys, argv, message):
    from matting.cli import build_parser

    base = ["a.jpg"] if argv == [] else ["a.jpg", "-o", "out"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_intermixed_args(base + argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert build_parser().parse_intermixed_args(["a.jpg", "-o", "out", "--workers", "3"]).workers == 3
    assert build_parser().parse_intermixed_args(["a.jpg", "-o", "out", "--batch-size", "1"]).batch_size == 1


def test_inputs_may_follow_the_options():
    """`photos/ -r archive.zip -o out.zip`: every input is taken, wherever it stands."""
    from matting.cli import build_parser

    args = build_parser().parse_intermixed_args(["photos/", "-r", "archive.zip", "-o", "out.zip", "more.jpg"])
    assert args.inputs == ["photos/", "archive.zip", "more.jpg"] and args.recursive and args.output == Path("out.zip")


def test_crop_takes_an_optional_margin():
    from matting.cli import build_parser

    parse = build_parser().parse_intermixed_args
    assert parse(["a.jpg", "-o", "o"]).crop is None
    assert parse(["a.jpg", "-o", "o", "--crop"]).crop == "0"
    assert parse(["a.jpg", "-o", "o", "--crop", "5%"]).crop == "5%"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_first_ctrl_c_asks_to_stop_the_second_interrupts():
    """In-process: the first SIGINT sets the cancel event and says so; the second raises KeyboardInterrupt; the
    previous handler is back afterwards (the subprocess test above checks the whole run)."""
    from matting.cli import _stop_on_ctrl_c

    class Lines:
        def __init__(self):
            self.lines = []

        def write(self, line):
            self.lines.append(line)

    cancel, progress = threading.Event(), Lines()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with _stop_on_ctrl_c(cancel, progress):
            signal.raise_signal(signal.SIGINT)
            assert cancel.is_set()
            assert progress.lines == ["stopping after the images in progress (Ctrl-C again to quit at once)"]
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_the_summary_line_counts_and_explains(capsys):
    """The last stderr line: counts, time, speed and the engine; a cancelled run says how many did not start;
    a run that only skipped says how to redo. The failures are not repeated there (each had its line as it
    happened)."""
    from types import SimpleNamespace

    from matting.cli import _print_summary

    pipe = SimpleNamespace(summary=lambda: "u2netp on cpu")
    ok = SimpleNamespace(status="done", name="a.jpg", error=None)
    bad = SimpleNamespace(status="failed", name="b.jpg", error="not an image")
    base = dict(done=1, skipped=0, failed=1, seconds=2.0, images_per_second=0.5, total=5, cancelled=False,
                results=[ok, bad], repeats=0)
    _print_summary(SimpleNamespace(**base), pipe)
    err = capsys.readouterr().err.splitlines()
    assert err == ["1 done, 0 skipped, 1 failed in 2.0 s (0.5 images/s; u2netp on cpu)"]
    _print_summary(SimpleNamespace(**{**base, "cancelled": True}), pipe)
    assert capsys.readouterr().err.splitlines()[-1] == ("1 done, 0 skipped, 1 failed in 2.0 s (0.5 images/s; u2netp "
                                                        "on cpu); stopped early, 3 not started: run again to resume")
    skipped = {**base, "done": 0, "failed": 0, "skipped": 2, "results": []}
    _print_summary(SimpleNamespace(**skipped), pipe)
    assert capsys.readouterr().err.splitlines()[-1] == ("0 done, 2 skipped, 0 failed in 2.0 s (0.5 images/s; u2netp "
                                                        "on cpu); everything was already done (--overwrite redoes it)")
    _print_summary(SimpleNamespace(**{**skipped, "done": 1}), pipe)
    assert "already done" not in capsys.readouterr().err


def fake_batch(monkeypatch, outcomes, *, cancelled=False, raises=None):
    """matting.batch.run_batch replaced by one that reports ``outcomes`` (status, notices) and records its
    arguments."""
    from types import SimpleNamespace

    import matting.batch

    seen = {}

    def run_batch(inputs, output, **kwargs):
        seen.update(kwargs, inputs=inputs, output=output)
        if raises is not None:
            raise raises
        results = []
        kwargs["on_planned"](len(outcomes))
        for i, (status, notices) in enumerate(outcomes, 1):
            result = SimpleNamespace(status=status, name=f"p{i}.jpg", notices=notices,
                                     error="broken" if status == "failed" else None)
            results.append(result)
            kwargs["on_result"](result, i, len(outcomes))
        count = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
        return SimpleNamespace(results=results, cancelled=cancelled, total=len(outcomes) + 2 * cancelled,
                               seconds=1.0, images_per_second=2.0, repeats=0, **count)

    monkeypatch.setattr(matting.batch, "run_batch", run_batch)
    return seen


def run_args(*extra):
    from matting.cli import build_parser

    return build_parser().parse_intermixed_args(["in/", "-o", "out", *extra])


def test_run_passes_the_choices_on_and_counts_what_went_through_the_network(monkeypatch, capsys):
    """Each option reaches run_batch; the progress line counts images that ran (skips excluded) and failures;
    notices come out as "name: notice"."""
    from types import SimpleNamespace

    from matting.cli import run
    from matting.settings import EdgeSettings

    seen = fake_batch(monkeypatch, [("skipped", []), ("done", ["16-bit image reduced to 8 bits"]), ("failed", [])])
    args = run_args("-r", "--overwrite", "--composite-format", "png", "--batch-size", "3", "--workers", "2")
    args.crop_margin = "margin"
    pipe = SimpleNamespace(summary=lambda: "engine")
    code = run(args, pipe, EdgeSettings(feather=1.0), ("cutout",), (1, 2, 3))
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert seen["inputs"] == ["in/"] and seen["output"] == Path("out") and seen["pipeline"] is pipe
    assert (seen["settings"], seen["kinds"], seen["background"]) == (EdgeSettings(feather=1.0), ("cutout",), (1, 2, 3))
    assert (seen["composite_format"], seen["overwrite"], seen["recursive"]) == ("png", True, True)
    assert (seen["batch_size"], seen["workers"], seen["crop"]) == (3, 2, "margin")
    assert "p2.jpg: 16-bit image reduced to 8 bits" in err
    progress = [line for line in err if line.startswith("[")]
    assert progress[0].startswith("[" + "." * 24 + "] 0/3")   # drawn as soon as the run is planned
    assert progress[-1].startswith("[" + "#" * 24 + "] 3/3 100%") and progress[-1].endswith(", 1 failed")
    # the failure as it happened, before the last progress line; not again in the summary
    assert err.count("failed: p3.jpg: broken") == 1
    assert err.index("failed: p3.jpg: broken") < err.index(progress[-1]) < len(err) - 1
    assert isinstance(seen["cancel"], threading.Event) and not seen["cancel"].is_set()


def test_run_reports_progress_in_images_that_ran_and_failures(monkeypatch):
    """Progress.update gets (finished, total, images that went through the network, failures): a skipped image
    counts as finished but not as processed (the speed is the network's)."""
    from types import SimpleNamespace

    import matting.batch_progress
    from matting.cli import run
    from matting.settings import EdgeSettings

    calls = []

    class Recorder:
        def __init__(self, enabled=True):
            pass

        def update(self, *args, force=False):
            calls.append(args)

        def status(self, text):
            pass

        def write(self, line):
            pass

        def close(self):
            pass

    monkeypatch.setattr(matting.batch_progress, "Progress", Recorder)
    fake_batch(monkeypatch, [("skipped", []), ("done", []), ("failed", []), ("done", [])])
    run(run_args(), SimpleNamespace(summary=lambda: "e"), EdgeSettings(), ("cutout",), None)
    assert calls == [(0, 4, 0, 0), (1, 4, 0, 0), (2, 4, 1, 0), (3, 4, 2, 1), (4, 4, 3, 1)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_run_asks_the_batch_to_stop(monkeypatch, capsys):
    """run() hands run_batch the event its Ctrl-C handler sets, and the handler speaks through the progress."""
    from types import SimpleNamespace

    import matting.batch
    from matting.cli import run
    from matting.settings import EdgeSettings

    def run_batch(inputs, output, *, cancel, **kwargs):
        signal.raise_signal(signal.SIGINT)
        assert cancel.is_set()
        return SimpleNamespace(results=[], cancelled=True, total=3, seconds=0.1, images_per_second=0.0, done=0,
                               skipped=0, failed=0, repeats=0)

    monkeypatch.setattr(matting.batch, "run_batch", run_batch)
    assert run(run_args(), SimpleNamespace(summary=lambda: "e"), EdgeSettings(), ("cutout",), None) == 130
    assert "stopping after the images in progress (Ctrl-C again to quit at once)" in capsys.readouterr().err


@pytest.mark.parametrize("outcomes, cancelled, code", [
    ([("done", []), ("skipped", [])], False, 0),
    ([("done", []), ("failed", [])], False, 1),
    ([("done", [])], True, 130),
])
def test_run_exit_status(monkeypatch, capsys, outcomes, cancelled, code):
    from types import SimpleNamespace

    from matting.cli import run
    from matting.settings import EdgeSettings

    fake_batch(monkeypatch, outcomes, cancelled=cancelled)
    assert run(run_args("--no-progress"), SimpleNamespace(summary=lambda: "e"), EdgeSettings(), ("cutout",), None) \
        == code


def test_run_turns_setup_errors_and_a_hard_interrupt_into_exit_codes(monkeypatch, capsys):
    from types import SimpleNamespace

    from matting.cli import run
    from matting.errors import OutputError
    from matting.settings import EdgeSettings

    pipe = SimpleNamespace(summary=lambda: "e")
    fake_batch(monkeypatch, [], raises=OutputError("cannot create the output folder out"))
    assert run(run_args("--no-progress"), pipe, EdgeSettings(), ("cutout",), None) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: cannot create the output folder out"
    fake_batch(monkeypatch, [], raises=KeyboardInterrupt())
    assert run(run_args("--no-progress"), pipe, EdgeSettings(), ("cutout",), None) == 130
    assert capsys.readouterr().err.splitlines()[-1] == \
        "interrupted: files already written are complete; run again to resume"


def test_a_composite_lands_on_the_given_colour_as_jpg_by_default(capsys, tmp_path):
    """--background reaches the composite: where the matte is clear the composite is that colour (JPEG's
    rounding aside), and without --composite-format it is a .jpg."""
    photo = jpeg(tmp_path / "p.jpg", 3)
    out = tmp_path / "out"
    code, _ = cli(capsys, photo, "-o", out, "--background", "0,0,255", "--alpha", "--raw")
    assert code == 0 and (out / "p_composite.jpg").is_file()
    alpha = np.asarray(Image.open(out / "p_alpha.png"))
    composite = np.asarray(Image.open(out / "p_composite.jpg").convert("RGB")).astype(int)
    clear = composite[alpha == 0]
    assert len(clear) > 20 and np.abs(clear - (0, 0, 255)).mean() < 12


def test_crop_reaches_the_written_files(capsys, tmp_path):
    """--crop trims every output to the subject's box plus the margin: the cutout and matte are smaller than the
    photo, the same size as each other, and --crop 0 is tighter than --crop 6."""
    yy, xx = np.mgrid[0:H * 2, 0:W * 2]
    disc = (np.hypot(yy - H, xx - W) < H // 2)[..., None] * np.array([250, 40, 40]) + \
        (~(np.hypot(yy - H, xx - W) < H // 2))[..., None] * np.array([30, 160, 30])
    photo = tmp_path / "disc.png"
    Image.fromarray(disc.astype(np.uint8)).save(photo)
    sizes = {}
    for margin in ("0", "6"):
        out = tmp_path / f"out{margin}"
        assert cli(capsys, photo, "-o", out, "--alpha", "--crop", margin)[0] == 0
        cutout, matte = Image.open(out / "disc.png"), Image.open(out / "disc_alpha.png")
        assert cutout.size == matte.size
        sizes[margin] = cutout.size
    assert sizes["0"][0] < W * 2 and sizes["0"][1] < H * 2
    assert sizes["6"][0] > sizes["0"][0] and sizes["6"][1] > sizes["0"][1]


def test_ray_asked_for_without_ray_installed_is_a_setup_error_with_what_to_do(monkeypatch, capsys, tmp_path):
    import sys

    from matting import cli

    monkeypatch.setitem(sys.modules, "ray", None)   # as if requirements-ray.txt were not installed
    source = Path(__file__).resolve().parents[1] / "assets" / "examples" / "rocket.jpg"
    assert cli.main([str(source), "-o", str(tmp_path / "out"), "--ray"]) == cli.EXIT_USAGE
    assert "error: --ray needs Ray: pip install -r requirements-ray.txt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device_type, cores, expected", [("cuda", 64, 4), ("cuda", 16, 4), ("cuda", 15, 2),
                                                          ("cuda", 12, 2), ("cuda", 11, 1), ("cpu", 64, 1)])
def test_engines_default_by_the_cores_there_are_to_feed_them_on_a_gpu(monkeypatch, device_type, cores, expected):
    import torch

    import matting.batch_runtime
    import matting.device
    from matting.batch_engines import default_engines

    monkeypatch.setattr(matting.device, "resolve_device", lambda requested: torch.device(device_type))
    monkeypatch.setattr(matting.batch_runtime, "cpu_cores", lambda: cores)
    assert default_engines("auto") == expected


def test_a_bad_device_leaves_the_engines_default_at_one_and_the_error_to_the_pipeline():
    from matting.batch_engines import default_engines

    assert default_engines("tpu") == 1


def test_the_command_line_runs_the_default_engine_count(capsys, tmp_path, monkeypatch):
    """Without --engines the CLI asks default_engines (here: 1 on this CPU) and the summary reports one engine;
    with it, the flag wins."""
    import matting.batch_engines

    asked = []
    real = matting.batch_engines.batch_engines

    def recording(options, engines, *args, **kwargs):
        asked.append(engines)
        return real(options, engines, *args, **kwargs)

    monkeypatch.setattr(matting.batch_engines, "batch_engines", recording)
    monkeypatch.setattr(matting.batch_engines, "default_engines", lambda device: 1)
    code, _ = cli(capsys, jpeg(tmp_path / "a.jpg"), "-o", tmp_path / "out", "--device", "cpu")
    assert code == 0 and asked == [1]
