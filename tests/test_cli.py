"""Command line: outputs, exit status (0 / 1 / 2 / 130), one stderr line per failure, resume, zips, progress."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
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
