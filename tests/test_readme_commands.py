"""Every command of the README's "Command line" block and its Python snippet run as written (on small stand-in
files), so a wrong line fails CI. The install and app commands are checked by .ci/run itself."""

from __future__ import annotations

import re
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import matting.pipeline
from matting.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def block_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def cli_lines() -> list[str]:
    lines = []
    for line in block_after("## Command line", "bash").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()   # the comments after the commands
        if line:
            lines.append(line)
    return lines


@pytest.fixture
def stand_ins(tmp_path, monkeypatch, pipe):
    """photo.jpg, other.png, a photos/ folder with a sub-folder, archive.zip; the CLI reuses one pipeline."""
    monkeypatch.setattr(matting.pipeline, "Pipeline", lambda **kwargs: pipe)
    monkeypatch.setattr(matting.pipeline, "get_pipeline", lambda **kwargs: pipe)
    monkeypatch.setattr(matting, "get_pipeline", lambda **kwargs: pipe)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def photo(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        image[12:36, 16:48] = (230, 180, 40)
        Image.fromarray(image).save(path)

    photo(tmp_path / "photo.jpg")
    photo(tmp_path / "other.png")
    photo(tmp_path / "photos" / "a.jpg")
    photo(tmp_path / "photos" / "more" / "b.png")
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as archive:
        archive.write(tmp_path / "other.png", "in_zip.png")
    return tmp_path


@pytest.mark.parametrize("line", cli_lines())
def test_every_command_line_of_the_readme_runs(stand_ins, line, capsys):
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "matting"], line
    if "--help" in argv:
        with pytest.raises(SystemExit) as done:
            main(argv[3:])
        assert done.value.code == 0 and "--crop" in capsys.readouterr().out
        return
    assert main(argv[3:] + ["--no-progress"]) == 0, capsys.readouterr().err
    out = argv[argv.index("-o") + 1]
    assert Path(out).exists()
    if out.endswith(".zip"):
        with zipfile.ZipFile(out) as archive:
            names = set(archive.namelist())
        assert {"a.png", "more/b.png", "in_zip.png"} <= names, names   # recursive folder and the zip's member


def test_the_python_snippet_of_the_readme_runs(stand_ins):
    namespace: dict = {}
    exec(compile(block_after("## Python", "python"), "README.md", "exec"), namespace)
    assert namespace["full"].rgba.shape == (48, 64, 4) and namespace["full"].composite.shape == (48, 64, 3)
    assert max(namespace["preview"].size) <= 1024
