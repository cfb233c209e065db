"""The project as a pip package: installed (wheel built from this checkout) into a folder of its own, the
commands `matting` and `matting-app` work from another folder, with the weights that travel in the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps --target DIR <checkout>`: the dependencies are this environment's already."""
    target = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-cache-dir", "--target", str(target), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)   # pip builds in the tree; leave it as it was
    return target


def run(installed: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, str(installed / "bin" / argv[0]), *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_installed_commands_work_away_from_the_checkout(installed, tmp_path):
    assert (installed / "matting_assets" / "models" / "u2netp.safetensors").is_file()
    assert (installed / "matting_assets" / "models" / "NOTICE").is_file()
    assert (installed / "matting_assets" / "examples" / "NOTICE.md").is_file()
    assert (installed / "demo" / "live_view.js").is_file() and (installed / "demo" / "live_edges.js").is_file()
    shutil.copy(ROOT / "assets" / "examples" / "coffee.png", tmp_path / "photo.png")

    done = run(installed, tmp_path, "matting", "photo.png", "-o", "out", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "photo.png").size == (600, 400)
    where = subprocess.run([sys.executable, "-c", "import matting.assets, matting; print(matting.__file__); "
                            "print(matting.assets.assets_dir())"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(installed)}, timeout=120)
    module, assets = where.stdout.split()
    assert Path(module).is_relative_to(installed) and Path(assets) == installed / "matting_assets"

    helped = run(installed, tmp_path, "matting-app", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: matting-app") and "--port" in helped.stdout
