"""matting/batch_inputs.py: which files a batch takes from folders, globs and zips, under which names, and what
it says when an input gives nothing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from matting.batch_inputs import discover, safe_member_path
from matting.errors import InputError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """in/a.jpg, in/b.PNG, in/notes.txt, in/.hidden.jpg, in/sub/c.jpg, in/sub/deep/d.webp, in/pack.zip (e.jpg),
    other/f.jpg; the working folder is tmp_path, so patterns can be relative as a user types them."""
    for name in ("in/a.jpg", "in/b.PNG", "in/notes.txt", "in/.hidden.jpg", "in/sub/c.jpg", "in/sub/deep/d.webp",
                 "other/f.jpg"):
        touch(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "in" / "pack.zip", "w") as zf:
        zf.writestr("e.jpg", b"x")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def names(found) -> list[tuple[str, str]]:
    return [(item.name, str(item.rel)) for item in found.items]


def test_a_glob_names_files_relative_to_its_fixed_part(tree):
    found = discover(["in/*.jpg"])
    assert names(found) == [("a.jpg", "a")]   # hidden files and other extensions are not images here
    assert names(discover(["in/*/*.jpg"])) == [("sub/c.jpg", "sub/c")]
    assert names(discover(["*/a.jpg"])) == [("in/a.jpg", "in/a")]


def test_a_glob_matching_folders_walks_them_recursive_only_when_asked(tree):
    assert names(discover(["in/s*"])) == [("sub/c.jpg", "sub/c")]
    assert names(discover(["in/s*"], recursive=True)) == [("sub/c.jpg", "sub/c"), ("sub/deep/d.webp", "sub/deep/d")]


def test_a_glob_matching_a_zip_opens_it(tree):
    found = discover(["in/*.zip"])
    assert names(found) == [("e.jpg", "e")] and len(found.archives) == 1
    assert found.items[0].read_bytes() == b"x"
    found.close()


def test_a_glob_that_matches_no_image_says_so(tree):
    found = discover(["in/*.txt", "nothing/*.jpg"])
    assert [(item.name, item.error) for item in found.items] == [
        ("in/*.txt", "no images match this pattern"), ("nothing/*.jpg", "no images match this pattern")]
    assert all(item.rel == PurePosixPath("_") for item in found.items)
    with pytest.raises(InputError, match="^no images match this pattern$"):
        found.items[0].read_bytes()


def test_a_glob_skips_the_excluded_folder(tree):
    assert names(discover(["*"], recursive=True, exclude=tree / "in")) == [("other/f.jpg", "other/f")]


def test_folders_recursive_or_not_and_an_empty_folder(tree):
    assert names(discover(["in"])) == [("a.jpg", "a"), ("b.PNG", "b")]
    assert [n for n, _ in names(discover(["in"], recursive=True))] == ["a.jpg", "b.PNG", "sub/c.jpg",
                                                                       "sub/deep/d.webp"]
    (tree / "empty").mkdir()
    item = discover(["empty"]).items[0]
    assert item.error.startswith("no images in this folder (looked for .bmp, .gif, .jpeg") and \
        item.error.endswith("; add -r to look in sub-folders)")
    assert discover(["empty"], recursive=True).items[0].error.endswith(".webp)")


def test_a_single_file_keeps_its_name(tree):
    assert names(discover([str(tree / "in" / "b.PNG")])) == [("b.PNG", "b")]
    assert names(discover("other/f.jpg")) == [("f.jpg", "f")]   # one input as a plain string


def test_zip_entry_names_cannot_leave_the_output():
    assert safe_member_path("../../etc/x.jpg") == PurePosixPath("etc/x.jpg")
    assert safe_member_path("C:\\photos\\..\\a.jpg") == PurePosixPath("photos/a.jpg")
    assert safe_member_path("/abs/./b.jpg") == PurePosixPath("abs/b.jpg")
    assert safe_member_path("../..") is None and safe_member_path("a\x00b/c.jpg") == PurePosixPath("c.jpg")


def test_unreadable_inputs_say_why(tree):
    item = discover(["in/a.jpg"]).items[0]
    os.remove(item.path)
    with pytest.raises(InputError, match="^file not found \\(deleted while the batch ran\\?\\)$"):
        item.read_bytes()
