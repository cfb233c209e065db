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
                 "in/.cache/x.jpg", "other/f.jpg"):
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
    assert item.error.startswith("no images in this folder (looked for .avif, .bmp, .gif, .heic") and \
        item.error.endswith("; add -r to look in sub-folders)")
    assert discover(["empty"], recursive=True).items[0].error.endswith(".webp)")


def test_a_single_file_keeps_its_name(tree):
    assert names(discover([str(tree / "in" / "b.PNG")])) == [("b.PNG", "b")]
    assert names(discover("other/f.jpg")) == [("f.jpg", "f")]   # one input as a plain string


def test_every_format_the_decoder_reads_is_listed_and_a_zip_in_a_zip_is_named_not_dropped(tmp_path):
    """A zip of AVIF, JFIF and PPM photos had them passed over unseen (a single upload of each worked), and an
    archive inside it vanished; HEIC photos are listed so they fail with the reason (not silently skipped)."""
    from matting.batch_inputs import NESTED_ARCHIVE

    names_in = ["cat.avif", "cat.jfif", "cat.ppm", "cat.JPG", "iphone.HEIC", "inner.zip", "notes.txt"]
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        for name in names_in:
            archive.writestr(f"d/{name}", b"x")
    found = discover([tmp_path / "set.zip"])
    assert [(item.name, item.error) for item in found.items] == [
        ("d/cat.JPG", None), ("d/cat.avif", None), ("d/cat.jfif", None), ("d/cat.ppm", None),
        ("d/iphone.HEIC", None), ("set.zip/d/inner.zip", NESTED_ARCHIVE)]
    for name in names_in:
        (tmp_path / "folder").mkdir(exist_ok=True)
        (tmp_path / "folder" / name).write_bytes(b"x")
    assert sorted(item.name for item in discover([tmp_path / "folder"]).items) == sorted(names_in[:5])
    only_nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(only_nested, "w") as archive:
        archive.writestr("inner.zip", b"x")
    assert [item.error for item in discover([only_nested]).items] == [NESTED_ARCHIVE]


def test_zip_entry_names_cannot_leave_the_output():
    assert safe_member_path("../../etc/x.jpg") == PurePosixPath("etc/x.jpg")
    assert safe_member_path("C:\\photos\\..\\a.jpg") == PurePosixPath("photos/a.jpg")
    assert safe_member_path("/abs/./b.jpg") == PurePosixPath("abs/b.jpg")
    assert safe_member_path("../..") is None and safe_member_path("a\x00b/c.jpg") == PurePosixPath("c.jpg")
    assert safe_member_path("photos/C:b.jpg") == PurePosixPath("photos/C:b.jpg")   # a drive only comes first


def test_unreadable_inputs_say_why(tree):
    item = discover(["in/a.jpg"]).items[0]
    os.remove(item.path)
    with pytest.raises(InputError, match="^file not found \\(deleted while the batch ran\\?\\)$"):
        item.read_bytes()


def test_a_file_named_zip_that_is_not_one_is_one_failed_input(tmp_path):
    bad = touch(tmp_path / "photos.zip", b"PK but not really")
    found = discover([bad])
    assert [(i.name, i.rel, i.error) for i in found.items] == [
        ("photos.zip", PurePosixPath("_"), "cannot open the archive: not a valid zip file")]


def test_an_archive_without_images_says_so_and_its_images_follow_folders_and_junk(tmp_path):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", b"x")
    assert [(i.name, i.error) for i in discover([empty]).items] == [("empty.zip", "no images in this archive")]
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(mixed, "w") as zf:
        zf.writestr("folder/", b"")                       # a folder entry first
        zf.writestr("notes.txt", b"x")                    # then a non-image
        zf.writestr("__MACOSX/._a.jpg", b"x")             # and macOS junk
        zf.writestr("__MACOSX/b.jpg", b"x")
        zf.writestr(".hidden/c.jpg", b"x")                # and a hidden folder
        zf.writestr("folder/b.jpg", b"bb")
        zf.writestr("a.jpg", b"a")
    found = discover([mixed])
    assert names(found) == [("a.jpg", "a"), ("folder/b.jpg", "folder/b")]
    assert [item.read_bytes() for item in found.items] == [b"a", b"bb"]
    found.close()


def test_zip_entries_past_the_archive_budget_are_refused_one_by_one(tmp_path, monkeypatch):
    import matting.batch_inputs as inputs

    monkeypatch.setattr(inputs, "MAX_ARCHIVE_BYTES", 5)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, size in (("a.jpg", 2), ("b.jpg", 2), ("c.jpg", 1), ("d.jpg", 1)):
            zf.writestr(name, b"x" * size)                # 2, 4, 5 (the budget exactly), then 6 bytes in all
    errors = [item.error for item in discover([archive]).items]
    assert errors == [None, None, None, "the archive expands to more than 0 GB; entries past that are refused"]


def test_a_zip_entry_over_the_size_limit_or_encrypted_is_refused_by_its_header(tmp_path, monkeypatch):
    import matting.batch_inputs as inputs

    monkeypatch.setattr(inputs, "MAX_ENTRY_BYTES", 2 << 20)
    monkeypatch.setattr(inputs, "MIN_RATIO_BYTES", 8 << 20)   # the ratio guard is tested in test_bad_inputs_engine
    archive = tmp_path / "limits.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("at_limit.jpg", bytes(2 << 20))
        zf.writestr("over.jpg", bytes(3 << 20))
        zf.writestr("locked.jpg", b"x")
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 1) + 1)
    raw[central + 8] |= 0x1            # the third entry's central-directory flags say "encrypted"
    archive.write_bytes(bytes(raw))
    errors = {item.name: item.error for item in discover([archive]).items}
    assert errors == {"at_limit.jpg": None, "locked.jpg": "encrypted zip entries are not supported",
                      "over.jpg": "this zip entry declares 3 MB uncompressed, over the limit of 2 MB (zip bomb?)"}


def test_a_damaged_zip_entry_fails_alone_naming_its_archive(tmp_path):
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.jpg", b"good data here")
        zf.writestr("b.jpg", b"more good data")
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"good data here")
    raw[at:at + 4] = b"evil"                               # the stored CRC no longer matches
    archive.write_bytes(bytes(raw))
    found = discover([archive])
    with pytest.raises(InputError, match="^cannot read this entry of damaged.zip: Bad CRC-32 for file 'a.jpg'$"):
        found.items[0].read_bytes()
    assert found.items[1].read_bytes() == b"more good data"
    found.close()


def test_a_double_star_glob_reaches_every_depth(tree):
    assert names(discover(["in/**/*.jpg"])) == [("a.jpg", "a"), ("sub/c.jpg", "sub/c")]
    assert names(discover(["in/**/*.webp"])) == [("sub/deep/d.webp", "sub/deep/d")]


def test_hidden_files_and_folders_stay_out_even_when_a_pattern_names_them(tree):
    assert all(not n.startswith(".") and "/." not in n for n, _ in names(discover(["in"], recursive=True)))
    assert [i.error for i in discover(["in/.*.jpg"]).items] == ["no images match this pattern"]


def test_the_excluded_folder_stays_out_of_walks_at_any_depth(tree):
    skip = tree / "in" / "sub"
    assert names(discover(["in"], recursive=True, exclude=skip)) == [("a.jpg", "a"), ("b.PNG", "b")]
    assert [n for n, _ in names(discover(["i*"], recursive=True, exclude=skip))] == ["in/a.jpg", "in/b.PNG"]


@pytest.mark.parametrize("filename", ["..jpg", "...jpg"])
def test_a_file_whose_stem_is_dots_gets_a_plain_output_name(tmp_path, filename):
    photo = touch(tmp_path / filename)
    assert names(discover([photo])) == [(filename, "image")]


def test_a_ratio_guard_refuses_what_image_data_cannot_be_and_lets_real_data_through(tmp_path, monkeypatch):
    import matting.batch_inputs as inputs

    monkeypatch.setattr(inputs, "MIN_RATIO_BYTES", 1 << 20)
    archive = tmp_path / "ratio.zip"
    noise = os.urandom(1 << 20)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", bytes(3 << 20))           # 3 MB of zeros: thousands of times smaller packed
        zf.writestr("at_floor.jpg", bytes(1 << 20))         # exactly the floor: not looked at
        zf.writestr("noise.jpg", noise + noise[:4096])      # over the floor, but packs like real image data
    with zipfile.ZipFile(archive) as zf:
        zeros = zf.getinfo("zeros.jpg")
    errors = {item.name: item.error for item in discover([archive]).items}
    ratio = zeros.file_size / zeros.compress_size
    assert errors == {"at_floor.jpg": None, "noise.jpg": None,
                      "zeros.jpg": f"this zip entry expands {ratio:,.0f} times, more than image data can "
                                   "(limit 200:1; zip bomb?)"}


def test_the_entry_checks_at_their_edges():
    """_entry_problem on headers alone: a ratio of exactly 200:1 passes, one byte more is refused (with the ratio
    as declared, even for a 1-byte packed size); past the real archive budget the message names it in GB."""
    from types import SimpleNamespace

    from matting.batch_inputs import MAX_ARCHIVE_BYTES, MIN_RATIO_BYTES, _entry_problem

    def entry(size, packed):
        return SimpleNamespace(flag_bits=0, file_size=size, compress_size=packed)

    packed = MIN_RATIO_BYTES // 100
    assert _entry_problem(entry(200 * packed, packed), 0) is None
    assert _entry_problem(entry(200 * packed + 1, packed), 0).startswith("this zip entry expands 200 times")
    assert _entry_problem(entry(MIN_RATIO_BYTES + 1, 1), 0) == (
        f"this zip entry expands {MIN_RATIO_BYTES + 1:,} times, more than image data can (limit 200:1; zip bomb?)")
    assert _entry_problem(entry(10, 10), MAX_ARCHIVE_BYTES) is None
    assert _entry_problem(entry(10, 10), MAX_ARCHIVE_BYTES + 1) == \
        "the archive expands to more than 32 GB; entries past that are refused"


def test_a_missing_input_and_a_file_turned_folder_are_named(tmp_path):
    missing = tmp_path / "gone.jpg"
    item = discover([missing]).items[0]
    assert (item.name, item.error) == (str(missing), "file or folder not found")
    photo = touch(tmp_path / "p.jpg")
    item = discover([photo]).items[0]
    photo.unlink()
    photo.mkdir()
    with pytest.raises(InputError, match="^not a file but a folder$"):
        item.read_bytes()
    (tmp_path / "empty").mkdir()
    assert discover([tmp_path / "empty"]).items[0].name == str(tmp_path / "empty")


def test_a_source_for_another_process_names_the_same_file_and_looks_each_folder_up_once(tmp_path, monkeypatch):
    """The helper engines are handed thousands of photos: with the run's folder cache each folder's real path is
    looked up once (not a realpath per photo) and every source still reads the photo's own bytes, from any working
    folder, through a linked folder too."""
    import matting.batch_inputs as batch_inputs
    from matting.batch_inputs import read_source, source_of

    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        (real / f"p{i}.jpg").write_bytes(b"photo %d" % i)
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    items = discover(["linked", "real"]).items   # relative names, one through a link
    looked = []
    resolve = os.path.realpath
    monkeypatch.setattr(batch_inputs.os.path, "realpath", lambda p, *a, **k: looked.append(str(p)) or resolve(p))
    folders: dict[str, str] = {}
    sources = [source_of(item, folders) for item in items]
    assert sorted(looked) == ["linked", "real"]
    monkeypatch.chdir("/")
    assert [read_source(s) for s in sources] == [b"photo %d" % i for i in range(3)] * 2
    assert all(Path(s["path"]).is_absolute() for s in sources)
