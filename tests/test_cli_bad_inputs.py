"""Every hostile input of tests/bad_inputs.py through the command line (``python -m matting``), in process.

All cases go in one run, as a user would pass a folder of mixed files: the run exits 1, each refused file gets
exactly one ``failed: <name>: <reason>`` line on stderr with the engine's one-line message, and every
odd-but-valid file still gets its cutout at the expected upright size.
"""

from __future__ import annotations

import pytest
from PIL import Image

import matting.pipeline
from matting.cli import main
from tests.bad_inputs import image_cases

CASES = image_cases()


@pytest.fixture(scope="module")
def run_all(tmp_path_factory, pipe):
    """One CLI run over every case; (exit code, stderr lines, output folder)."""
    import io
    import sys

    folder = tmp_path_factory.mktemp("hostile")
    paths = []
    for case in CASES:
        path = folder / "in" / case.filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(case.data)
        paths.append(str(path))
    out = folder / "out"
    real = matting.pipeline.Pipeline
    matting.pipeline.Pipeline = lambda **kwargs: pipe
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        code = main([*paths, "-o", str(out), "--no-progress"])
        err = sys.stderr.getvalue().splitlines()
    finally:
        sys.stderr = stderr
        matting.pipeline.Pipeline = real
    return code, err, out


def test_the_run_exits_1(run_all):
    code, err, _ = run_all
    assert code == 1, err
    assert any(line.startswith(f"{sum(1 for c in CASES if not c.error)} done") for line in err), err


@pytest.mark.parametrize("case", CASES, ids=[c.filename for c in CASES])
def test_each_file_is_refused_in_one_line_or_written(run_all, case):
    _, err, out = run_all
    failures = [line for line in err if line.startswith(f"failed: {case.filename}:")]
    stem = case.filename.rsplit(".", 1)[0]
    if case.error:
        assert len(failures) == 1, err
        assert case.message_word.lower() in failures[0].lower(), failures[0]
        assert not (out / f"{stem}.png").exists()
    else:
        assert not failures, failures
        with Image.open(out / f"{stem}.png") as cutout:
            assert cutout.mode == "RGBA" and cutout.size == case.size
