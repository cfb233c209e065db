"""The house as the README describes it: every module is in the README's layout table (by its path, its file
name, or its package), says in its first line what it does, and the engine never imports the benchmarks or the
evaluation."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES_LISTED_WHOLE = ("matting/ops/", "matting/models/", "matting/bench/", "matting/eval/")


def modules() -> list[Path]:
    return sorted(p for folder in ("matting", "demo") for p in (ROOT / folder).rglob("*.py")
                  if "__pycache__" not in p.parts)


def layout_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_every_module_is_in_the_layout_table_and_says_what_it_does():
    table = layout_section()
    missing, undocumented = [], []
    for path in modules():
        rel = path.relative_to(ROOT).as_posix()
        package = rel.rsplit("/", 1)[0] + "/"
        if path.name not in ("__init__.py", "__main__.py") and package not in PACKAGES_LISTED_WHOLE \
                and rel not in table and f"`{path.name}`" not in table and path.name.removesuffix(".py") + ".py" \
                not in table:
            missing.append(rel)
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not docstring or len(docstring.splitlines()[0]) < 12:
            undocumented.append(rel)
    assert not missing, f"not in the README's layout table: {missing}"
    assert not undocumented, f"no first line saying what the module does: {undocumented}"


def test_the_engine_never_imports_the_benchmarks_or_the_evaluation():
    engine = [p for p in modules() if p.relative_to(ROOT).parts[:2] not in (("matting", "bench"), ("matting", "eval"))]
    offenders = []
    for path in engine:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(n in (".bench", ".eval", "matting.bench", "matting.eval") or n.startswith(("matting.bench.",
                   "matting.eval.", ".bench.", ".eval.")) or (isinstance(node, ast.ImportFrom) and node.level == 1
                   and node.module is None and n in ("bench", "eval")) for n in names):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert not offenders, offenders


def test_ray_is_imported_only_by_the_ray_modules_and_only_when_asked_for():
    """Ray is optional (requirements-ray.txt): `python app.py` and the plain CLI never need it. Only
    matting/ray_*.py import it; the CLI and the app's launcher reach them inside their --ray branch."""
    offenders = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                is_ray = name.split(".")[0] == "ray" or name.lstrip(".").startswith(("ray_", "matting.ray_"))
                if is_ray and not path.name.startswith("ray_") and id(node) in top_level:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, f"Ray imported at module level outside matting/ray_*.py: {offenders}"
