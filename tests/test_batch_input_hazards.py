"""What a batch does with inputs that could hang it, fill the memory, or lose a user's photos (found by a hostile-
input campaign against the command line): each gets one clear line, the others still come out, nothing an input
holds is overwritten."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import matting.batch_inputs as batch_inputs
import matting.pipeline
from matting.batch import run_batch
from matting.batch_inputs import MAX_ENTRY_BYTES, discover, read_file, shown_name
from matting.cli import main
from matting.errors import InputError, InvalidParameterError, OutputError
from matting.resolution import resolve_max_side
from matting.settings import parse_color

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pipes, links and byte names as on POSIX")


def photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(args: list[str], pipe) -> tuple[int, list[str]]:
    """``python -m matting`` in process with the tests' pipeline: (exit status, stderr lines)."""
    real, stderr = matting.pipeline.Pipeline, sys.stderr
    matting.pipeline.Pipeline = lambda **kwargs: pipe
    sys.stderr = io.StringIO()
    try:
        code = main([*args, "--no-progress", "--engines", "1"])
        return code, sys.stderr.getvalue().splitlines()
    finally:
        sys.stderr, matting.pipeline.Pipeline = stderr, real


# ---------------------------------------------------------------- the user's photos are never overwritten
def test_a_folder_given_as_both_input_and_output_is_refused_before_anything_is_written(tmp_path, pipe):
    a = photo(tmp_path / "shoot" / "a.png")
    before = digest(a)
    code, err = cli([str(tmp_path / "shoot"), "-o", str(tmp_path / "shoot")], pipe)
    assert code == 2 and err == [f"error: the output {tmp_path / 'shoot'} is also an input: the cutouts would "
                                 "overwrite the photos (name another folder or .zip)"]
    assert digest(a) == before and sorted(p.name for p in (tmp_path / "shoot").iterdir()) == ["a.png"]


def test_an_input_zip_named_as_the_output_is_refused_and_kept(tmp_path, pipe):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(photo(tmp_path / "u.png"), "u.png")
    before = digest(archive)
    with pytest.raises(OutputError, match="is also an input"):
        run_batch([archive], archive, pipeline=pipe)
    assert digest(archive) == before


def test_an_input_that_is_the_output_by_another_name_is_refused(tmp_path, pipe):
    """A link to the output folder, or the folder by a path with "..", is the output all the same."""
    a = photo(tmp_path / "shoot" / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "shoot", target_is_directory=True)
    (tmp_path / "other").mkdir()
    for name in (tmp_path / "link", tmp_path / "other" / ".." / "shoot"):
        with pytest.raises(OutputError, match="is also an input"):
            run_batch([tmp_path / "missing.png", name], tmp_path / "shoot", pipeline=pipe)
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.png"]


def test_an_output_name_with_a_nul_is_refused_in_words(tmp_path, pipe):
    with pytest.raises(OutputError, match="NUL character"):
        run_batch([photo(tmp_path / "a.png")], str(tmp_path / "out\0put"), pipeline=pipe)


def test_an_empty_output_name_is_refused_not_taken_for_the_working_folder(tmp_path, pipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = photo(tmp_path / "a.png")
    before = digest(a)
    with pytest.raises(SystemExit) as exit_:
        cli(["a.png", "-o", ""], pipe)
    assert exit_.value.code == 2
    with pytest.raises(OutputError, match="^the output is an empty name"):
        run_batch(["a.png"], "", pipeline=pipe)
    assert digest(a) == before and sorted(os.listdir(tmp_path)) == ["a.png"]


def test_a_photo_whose_output_would_replace_it_fails_alone_and_the_others_come_out(tmp_path, pipe, monkeypatch):
    """`a.png b.jpg -o .`: a.png's cutout would be a.png itself; b.jpg's cutout b.png is written."""
    monkeypatch.chdir(tmp_path)
    a, b = photo(tmp_path / "a.png"), photo(tmp_path / "b.jpg", seed=1)
    before = digest(a)
    summary = run_batch(["a.png", "b.jpg"], ".", pipeline=pipe)
    assert [(r.name, r.status, r.error_code) for r in summary.results] == [
        ("a.png", "failed", "write_error"), ("b.jpg", "done", None)]
    assert summary.results[0].error == ("its output a.png would overwrite an input file in the output folder "
                                        "(name another output folder)")
    assert digest(a) == before and Image.open(tmp_path / "b.png").mode == "RGBA" and b.exists()


@posix_only
def test_a_photo_reached_through_a_link_from_another_folder_is_not_overwritten(tmp_path, pipe, monkeypatch):
    """"picks/a.png" is a link to "out/a.png": a.png's cutout, written to out/a.png, would replace the photo."""
    monkeypatch.chdir(tmp_path)
    a = photo(tmp_path / "out" / "a.png")
    before = digest(a)
    (tmp_path / "picks").mkdir()
    (tmp_path / "picks" / "a.png").symlink_to(a)
    photo(tmp_path / "picks" / "b.png", seed=1)
    summary = run_batch(["picks"], "out", pipeline=pipe)
    assert [(r.name, r.status, r.error_code) for r in summary.results] == [
        ("a.png", "failed", "write_error"), ("b.png", "done", None)]
    assert digest(a) == before and Image.open(tmp_path / "out" / "b.png").mode == "RGBA"


def test_a_folder_whose_name_begins_like_the_outputs_is_not_inside_it(tmp_path, pipe):
    """Photos in "out2" are not in "out" (the guard compares path strings): a rerun from "out2" into "out" skips
    them instead of refusing them as inputs its outputs would replace."""
    for name in ("a.png", "b.png"):
        photo(tmp_path / "out2" / name)
    assert run_batch([tmp_path / "out2"], tmp_path / "out", pipeline=pipe).done == 2
    again = run_batch([tmp_path / "out2"], tmp_path / "out", pipeline=pipe)
    assert [(r.name, r.status) for r in again.results] == [("a.png", "skipped"), ("b.png", "skipped")]


def test_the_guard_looks_only_where_an_output_exists_and_resolves_each_folder_once(tmp_path, pipe, monkeypatch):
    """Planning a run of thousands of photos stats each few times (on the H200 host the run's start, about 0.3 s
    before the first image was read, was the whole gap between its rate and the steady one): into a fresh folder
    no input is resolved at all; where outputs exist, each input folder's real path is looked up once, not once
    per photo."""
    import matting.batch as batch
    import matting.batch_outputs as batch_outputs

    for i in range(3):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    looked = []
    monkeypatch.setattr(batch, "inputs_in_folder", lambda *a: looked.append(a) or set())
    assert run_batch([tmp_path / "in"], tmp_path / "out", pipeline=pipe).done == 3
    assert looked == []   # nothing in "out" yet: no output can be an input
    monkeypatch.undo()
    folders = []
    real = os.path.realpath
    guard = (batch_outputs.inputs_in_folder.__code__, batch_inputs.in_real_folder.__code__)

    def realpath(path, *args, **kwargs):
        if sys._getframe(1).f_code in guard:   # the guard's own lookups (in_real_folder: each folder's)
            folders.append(str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(batch_outputs.os.path, "realpath", realpath)
    again = run_batch([tmp_path / "in"], tmp_path / "out", pipeline=pipe)
    assert again.skipped == 3 and folders.count(str(tmp_path / "in")) == 1


def test_a_photo_named_by_two_inputs_is_done_once_and_the_summary_says_so(tmp_path, pipe, monkeypatch):
    """"shots/*.png shots/a.png ./shots": done three times before, the second and third as a_2 and a_3."""
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "shots" / "a.png"), photo(tmp_path / "shots" / "b.png", seed=1)
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as archive:
        archive.write(tmp_path / "shots" / "a.png", "a.png")
    code, err = cli(["shots/*.png", "shots/a.png", "./shots", str(tmp_path / "shots" / "b.png"), "more.zip",
                     "more.zip", "-o", "out"], pipe)
    assert code == 0
    # the zip's a.png is another file (its outputs a_2): taken once, however often the zip is named
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "a.png", "a_2.png", "b.png"]
    assert err[-1].startswith("3 done, 0 skipped, 0 failed")
    assert "; 5 named again by a later input, done once" in err[-1]
    # a failure is reported each time it is named
    assert [item.error is not None for item in discover(["missing.png", "missing.png"]).items] == [True, True]


# ---------------------------------------------------------------- inputs that would hang or fill the memory
@posix_only
def test_a_pipe_in_a_folder_fails_at_once_and_the_photo_beside_it_comes_out(tmp_path, pipe):
    photo(tmp_path / "in" / "ok.jpg")
    os.mkfifo(tmp_path / "in" / "pipe.png")   # reading it would wait for a writer for ever
    summary = run_batch([tmp_path / "in"], tmp_path / "out", pipeline=pipe)
    assert [(r.name, r.status, r.error) for r in summary.results] == [
        ("ok.jpg", "done", None), ("pipe.png", "failed", "not a regular file (a pipe, a device or a socket)")]
    named = discover([tmp_path / "in" / "pipe.png"]).items[0]
    assert named.error == "not a regular file (a pipe, a device or a socket)"
    (tmp_path / "to_pipe.png").symlink_to(tmp_path / "in" / "pipe.png")   # a link to it is no dangling link
    assert discover([tmp_path / "to_pipe.png"]).items[0].error == "not a regular file (a pipe, a device or a socket)"


@posix_only
def test_a_device_or_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(InputError, match=r"^not a regular file \(a pipe, a device or a socket\)$"):
        read_file(tmp_path / "zero.png")
    monkeypatch.setattr(batch_inputs, "MAX_ENTRY_BYTES", 1000)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(1000))
    with pytest.raises(InputError, match=r"^the file is 0 MB, over the limit of 0 MB for one image$"):
        read_file(big)
    assert MAX_ENTRY_BYTES == 400 << 20   # the zip entries' limit: a 100 MP RGBA TIFF


@posix_only
def test_a_recursive_pattern_does_not_follow_links_round_a_loop(tmp_path, monkeypatch):
    """glob.glob's "**" follows links to folders: two links to "." made it list without end."""
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "shots" / "day" / "a.png")
    photo(tmp_path / "shots" / "b.png")
    (tmp_path / "shots" / "day" / "loop1").symlink_to(".")
    (tmp_path / "shots" / "day" / "loop2").symlink_to(".")
    found = discover(["shots/**/*.png"])
    assert [(item.name, str(item.rel)) for item in found.items] == [("b.png", "b"), ("day/a.png", "day/a")]
    assert [item.name for item in discover(["shots/**/a.png", "shots/*.png"]).items] == ["day/a.png", "b.png"]
    # "shots/**" matches the folder day and the photo in it: taken once, and not a photo named again
    found = discover(["shots/**"])
    assert [item.name for item in found.items] == ["b.png", "day/a.png"] and found.repeats == 0


@posix_only
def test_links_and_folders_that_cannot_be_read_are_named_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "dangling.png").symlink_to("nowhere.png")
    assert discover([tmp_path / "dangling.png"]).items[0].error == "a link to nowhere.png, which does not exist"
    item = discover([photo(tmp_path / "gone.png")]).items[0]
    (tmp_path / "gone.png").unlink()
    (tmp_path / "gone.png").symlink_to("elsewhere.png")
    with pytest.raises(InputError, match="^a link to elsewhere.png, which does not exist$"):
        item.read_bytes()
    photo(tmp_path / "tree" / "ok" / "x.png")
    locked = tmp_path / "tree" / "locked"
    photo(locked / "y.png")
    locked.chmod(0)
    if os.access(locked, os.R_OK):   # root reads any folder: the listing is refused as it would be to a user
        real_scandir = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        found = discover([tmp_path / "tree"], recursive=True)
    finally:
        locked.chmod(0o755)
    assert [(item.name, item.error) for item in found.items] == [
        ("ok/x.png", None), ("locked", "cannot read this folder: Permission denied")]


def test_a_damaged_deflate_stream_in_a_zip_fails_that_entry_alone(tmp_path, monkeypatch):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bad.png", b"x" * 100)
    found = discover([archive])
    real_open = found.archives[0].zip.open

    def damaged(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        handle.read = lambda *a: (_ for _ in ()).throw(zlib.error("Error -3 while decompressing data"))
        return handle

    monkeypatch.setattr(found.archives[0].zip, "open", damaged)
    with pytest.raises(InputError, match="^cannot read this entry of in.zip: Error -3 while decompressing data$"):
        found.items[0].read_bytes()
    found.close()


# ---------------------------------------------------------------- names and values
def test_an_empty_input_name_is_one_failure_not_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "a.png")
    assert [(i.name, i.error) for i in discover([""]).items] == [
        ("(empty name)", "an empty input name: give a file, a folder, a pattern or a .zip")]


@posix_only
def test_a_file_name_that_is_not_utf8_is_matted_under_a_readable_name(tmp_path, pipe):
    folder = tmp_path / "in"
    folder.mkdir()
    photo(Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png")))
    summary = run_batch([folder], tmp_path / "out", pipeline=pipe)
    assert [(r.name, r.status) for r in summary.results] == [("caf\ufffd.png", "done")]
    assert [name for name in os.listdir(tmp_path / "out") if not name.startswith(".")] == ["caf\ufffd.png"]
    summary = run_batch([folder], tmp_path / "out.zip", pipeline=pipe)
    assert summary.done == 1 and zipfile.ZipFile(tmp_path / "out.zip").namelist() == ["caf\ufffd.png"]
    assert run_batch([folder], tmp_path / "out", pipeline=pipe).skipped == 1   # recorded: a rerun skips it


def test_names_are_reported_on_one_line():
    assert shown_name("bad\nname\t.png") == "bad\\nname\\t.png"
    assert shown_name("café 1.png") == "café 1.png"


@pytest.mark.parametrize("colour", ["inf,0,0", "1e400,0,0", "nan,0,0", (float("inf"), 0, 0), ("x", 0, 0)])
def test_a_colour_that_is_no_finite_number_is_refused_clearly(colour):
    with pytest.raises(InvalidParameterError, match="^not a colour: "):
        parse_color(colour)


def test_an_encoder_count_in_the_environment_that_is_no_number_is_one_line_and_exit_2(tmp_path, pipe, monkeypatch):
    """It was a ValueError traceback from deep in the batch."""
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "two")
    code, lines = cli([str(photo(tmp_path / "a.png")), "-o", str(tmp_path / "out")], pipe)
    assert (code, lines) == (2, ["error: MATTING_ENCODE_PROCESSES must be a whole number of at least 0, got 'two'"])


@pytest.mark.parametrize("value", ["abc", "1e9", "12.5"])
def test_a_max_side_in_the_environment_that_is_no_whole_number_is_refused_clearly(value, monkeypatch):
    monkeypatch.setenv("MATTING_MAX_SIDE", value)
    with pytest.raises(InvalidParameterError, match=f"^MATTING_MAX_SIDE must be a whole number of pixels "
                                                    rf"\(64 to 32768\), got '{value}'$"):
        resolve_max_side()
    monkeypatch.setenv("MATTING_MAX_SIDE", "  ")
    assert resolve_max_side() == 4096


# ---------------------------------------------------------------- the engine's own API
@posix_only
def test_the_engine_refuses_a_pipe_a_device_and_a_nul_in_a_name_in_one_line(tmp_path, pipe):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    for path in (tmp_path / "pipe.png", tmp_path / "zero.png"):
        with pytest.raises(InvalidParameterError, match=r"not a regular file \(a pipe, a device or a socket\)"):
            pipe.matte(path)
    with pytest.raises(InvalidParameterError, match=r"^a\\x00.png: a file name cannot hold a NUL character$"):
        pipe.matte("a\x00.png")
    closed = io.BytesIO(b"x")
    closed.close()
    with pytest.raises(InvalidParameterError, match="^cannot read the file object: I/O operation on closed file"):
        pipe.matte(closed)


def test_a_render_takes_a_colour_as_text_or_numbers_and_refuses_one_out_of_range(tmp_path, pipe):
    from matting.settings import EdgeSettings

    result = pipe.matte(photo(tmp_path / "a.png"))
    white = pipe.render(result, background="#fff").composite
    assert np.array_equal(white, pipe.render(result, background=[255, 255, 255]).composite)
    assert np.array_equal(white, pipe.render(result, background=(255, 255, 255)).composite)
    for bad in ("red", (300, 0, 0), (-1, 0, 0), (float("nan"), 0, 0), (1, 2)):
        with pytest.raises(InvalidParameterError, match="^not a colour: "):
            pipe.render(result, background=bad)
    with pytest.raises(InvalidParameterError, match="^a background is a colour .* not bytes$"):
        pipe.render(result, background=b"xx")
    with pytest.raises(InvalidParameterError, match="^feather must be between 0.0 and 100.0, got '2'$"):
        EdgeSettings(feather="2")
