"""matting/batch_outputs.py: the two places a batch writes to (a folder, a zip) and what they refuse."""

from __future__ import annotations

import zipfile
from pathlib import PurePosixPath

import pytest

from matting.batch_outputs import FolderSink, ZipSink, open_sink, write_atomic
from matting.errors import OutputError


def test_a_zip_output_can_sit_in_folders_that_do_not_exist_yet(tmp_path):
    sink = open_sink(tmp_path / "a" / "b" / "out.zip")
    assert isinstance(sink, ZipSink) and sink.folder == tmp_path / "a" / "b"
    sink.write(PurePosixPath("x/p.png"), b"png")
    sink.close()
    with zipfile.ZipFile(tmp_path / "a" / "b" / "out.zip") as zf:
        assert zf.namelist() == ["x/p.png"] and zf.read("x/p.png") == b"png"
        assert zf.getinfo("x/p.png").compress_type == zipfile.ZIP_STORED
    assert not list((tmp_path / "a" / "b").glob(".*.part")), "the temporary archive is gone"


def test_a_zip_knows_its_old_members_until_one_is_removed_and_keeps_the_rest(tmp_path):
    path = tmp_path / "out.zip"
    first = open_sink(path)
    for name in ("a.png", "b.png", "c.png"):
        first.write(PurePosixPath(name), name.encode())
    first.close()
    again = open_sink(path)
    assert [again.has(PurePosixPath(n)) for n in ("a.png", "b.png", "new.png")] == [True, True, False]
    again.remove("b.png")
    assert not again.has(PurePosixPath("b.png")) and again.has(PurePosixPath("a.png"))
    again.write(PurePosixPath("c.png"), b"C2")
    again.close()
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["a.png", "c.png"] and zf.read("c.png") == b"C2" and zf.read("a.png") == b"a.png"


def test_an_existing_file_that_is_not_a_zip_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "out.zip"
    path.write_bytes(b"my notes")
    with pytest.raises(OutputError, match=f"^the output {path} exists and is not a readable zip file \\(use "
                                          "--overwrite to replace it\\)$"):
        open_sink(path)
    assert path.read_bytes() == b"my notes"
    sink = open_sink(path, overwrite=True)
    sink.close()
    assert zipfile.is_zipfile(path)


def test_an_output_under_a_file_is_refused_with_the_systems_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(OutputError, match=f"^cannot write the archive {blocker}/out.zip: File exists$"):
        open_sink(blocker / "out.zip")
    with pytest.raises(OutputError, match=f"^cannot create the output folder {blocker}/out: Not a directory$"):
        open_sink(blocker / "out")
    with pytest.raises(OutputError, match="exists and is not a folder \\(name a folder, or a .zip file\\)$"):
        open_sink(blocker)


def test_a_folder_keeps_names_inside_it(tmp_path):
    sink = open_sink(tmp_path / "out")
    assert isinstance(sink, FolderSink) and sink.folder == tmp_path / "out"
    target = sink.prepared(PurePosixPath("sub/p.png"))
    assert target == tmp_path / "out" / "sub" / "p.png" and target.parent.is_dir()
    write_atomic(target, b"png")
    assert sink.has(PurePosixPath("sub/p.png")) and not sink.has(PurePosixPath("sub/q.png"))
    sink.remove("sub/p.png")
    assert not target.exists()
    for bad in ("../p.png", "/etc/p.png"):
        with pytest.raises(OutputError, match="^unsafe output name"):
            sink.prepared(PurePosixPath(bad))


def test_zip_members_carry_the_time_they_were_made_and_plain_file_permissions(tmp_path):
    import time

    path = tmp_path / "out.zip"
    sink = open_sink(path)
    sink.write(PurePosixPath("a.png"), b"a")
    sink.close()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("a.png")
    made = time.mktime(info.date_time + (0, 0, -1))
    assert abs(made - time.time()) < 120 and info.external_attr >> 16 == 0o644
    old_time = info.date_time
    again = open_sink(path)        # a rerun that writes nothing keeps the member as it was, date included
    again.close()
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("a.png").date_time == old_time and zf.read("a.png") == b"a"


def test_removing_an_output_that_is_already_gone_is_fine(tmp_path):
    sink = open_sink(tmp_path / "out")
    sink.remove("never_made.png")
    sink.remove("never_made.png")


def test_the_manifest_forgets_a_removed_output_for_good(tmp_path):
    """A tombstone line: the next run's manifest no longer has the record; forgetting what it never had writes
    nothing."""
    from matting.batch_manifest import Manifest

    sink = open_sink(tmp_path / "out")
    manifest = Manifest.load(sink, overwrite=False)
    manifest.add(PurePosixPath("a.png"), "a.jpg", "stamp", "recipe")
    manifest.add(PurePosixPath("b.png"), "b.jpg", "stamp", "recipe")
    manifest.forget(PurePosixPath("a.png"))
    size = sink.manifest_path.stat().st_size
    manifest.forget(PurePosixPath("not-there.png"))
    assert sink.manifest_path.stat().st_size == size
    again = Manifest.load(sink, overwrite=False)
    assert set(again.records) == {"b.png"}
    assert again.made_same(PurePosixPath("b.png"), "b.jpg", "stamp", "recipe")
    assert not again.made_same(PurePosixPath("a.png"), "a.jpg", "stamp", "recipe")


def test_the_recipe_changes_with_everything_that_shapes_an_output():
    """A rerun redoes an output when any of these differs: the weights, the precision, the working-size cap, the
    edge settings, the background colour, the composite's format or the crop; the same facts give the same recipe."""
    from types import SimpleNamespace

    from matting.batch_manifest import recipe_of
    from matting.crop import parse_margin
    from matting.settings import EdgeSettings

    pipe = SimpleNamespace(_weights_id="u2netp:abc", precision="fp32", max_side=4096)
    base = dict(pipeline=pipe, settings=EdgeSettings(), background=(255, 255, 255), composite_format="jpg",
                crop=None)
    first = recipe_of(**base)
    assert recipe_of(**base) == first and len(first) == 16
    variants = [
        {"pipeline": SimpleNamespace(_weights_id="u2netp:def", precision="fp32", max_side=4096)},
        {"pipeline": SimpleNamespace(_weights_id="u2netp:abc", precision="int8", max_side=4096)},
        {"pipeline": SimpleNamespace(_weights_id="u2netp:abc", precision="fp32", max_side=2048)},
        {"settings": EdgeSettings(feather=1.0)},
        {"background": (0, 0, 0)},
        {"background": None},
        {"composite_format": "png"},
        {"crop": parse_margin("10")},
    ]
    recipes = {recipe_of(**{**base, **change}) for change in variants}
    assert first not in recipes and len(recipes) == len(variants)
    assert recipe_of(**{**base, "crop": parse_margin("10")}) != recipe_of(**{**base, "crop": parse_margin("5%")})


def test_a_folder_output_creates_every_missing_level():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        sink = open_sink(Path(folder) / "out")
        target = sink.prepared(PurePosixPath("x/y/z/p.png"))
        assert target.parent.is_dir() and target.parent == Path(folder) / "out" / "x" / "y" / "z"


def test_stale_outputs_are_those_of_the_same_input_by_another_recipe_not_kept(tmp_path):
    from matting.batch_manifest import Manifest

    manifest = Manifest.load(open_sink(tmp_path / "out"), overwrite=False)
    manifest.add(PurePosixPath("a.png"), "a.jpg", "s", "old")
    manifest.add(PurePosixPath("a_alpha.png"), "a.jpg", "s", "old")
    manifest.add(PurePosixPath("b_alpha.png"), "b.jpg", "s", "old")
    manifest.add(PurePosixPath("a_composite.jpg"), "a.jpg", "s", "new")
    assert manifest.stale("a.jpg", "new", keep=[PurePosixPath("a.png")]) == [PurePosixPath("a_alpha.png")]
    assert manifest.stale("a.jpg", "old", keep=[]) == [PurePosixPath("a_composite.jpg")]


def test_stale_outputs_stay_right_through_records_replaced_forgotten_and_reloaded(tmp_path):
    """stale() keeps each input's outputs apart (an index, so planning a rerun is not a scan of every record per
    image): against a scan of the records after random adds (a name passing to another input, another recipe),
    forgets and reloads."""
    import random

    from matting.batch_manifest import Manifest

    rng = random.Random(5)
    sink = open_sink(tmp_path / "out")
    manifest = Manifest.load(sink, overwrite=False)
    inputs, names, recipes = [f"{c}.jpg" for c in "abcd"], [f"n{i}.png" for i in range(12)], ["r1", "r2"]
    for step in range(400):
        name = PurePosixPath(rng.choice(names))
        if rng.random() < 0.25:
            manifest.forget(name)
        else:
            manifest.add(name, rng.choice(inputs), "s", rng.choice(recipes))
        if step % 100 == 99:
            manifest.close()
            manifest = Manifest.load(sink, overwrite=False)
        for input_name in inputs:
            recipe, keep = rng.choice(recipes), {PurePosixPath(rng.choice(names))}
            scanned = {PurePosixPath(n) for n, r in manifest.records.items()
                       if r["input"] == input_name and r["recipe"] != recipe and PurePosixPath(n) not in keep}
            assert set(manifest.stale(input_name, recipe, keep)) == scanned
    manifest.close()


def test_stale_looks_at_the_inputs_own_records_only(tmp_path):
    """A rerun's plan asks stale() once per image: it must not go through every record each time (10,000 photos
    into an output folder holding 10,000 records took 3.4 s to plan on a 2-core Xeon, 20,000 four times that)."""
    from matting.batch_manifest import Manifest

    class NoScan(dict):
        def _scan(self, *args):
            raise AssertionError("stale() went through every record")

        items = values = keys = __iter__ = _scan

    manifest = Manifest.load(open_sink(tmp_path / "out"), overwrite=False)
    for i in range(3):
        manifest.add(PurePosixPath(f"p{i}.png"), f"p{i}.jpg", "s", "old")
    manifest.records = NoScan(manifest.records)
    assert manifest.stale("p1.jpg", "new", keep=[]) == [PurePosixPath("p1.png")]
    assert manifest.stale("p9.jpg", "new", keep=[]) == []
    manifest.close()


def test_a_manifest_line_whose_input_is_not_a_name_is_passed_over(tmp_path):
    """A hand-edited or foreign line (an input that is a list or a number) is skipped like a cut one; the records
    around it still count and planning does not fail on it."""
    from matting.batch_manifest import Manifest

    sink = open_sink(tmp_path / "out")
    sink.manifest_path.write_text('{"name": "a.png", "input": "a.jpg", "recipe": "r"}\n'
                                  '{"name": "b.png", "input": ["b.jpg"], "recipe": "r"}\n'
                                  '{"name": "c.png", "input": 3, "recipe": "r"}\n'
                                  '{"name": "d.png", "input": "d.jpg", "recipe": "r"}\n', encoding="utf-8")
    manifest = Manifest.load(sink, overwrite=False)
    assert set(manifest.records) == {"a.png", "d.png"}
    assert manifest.stale("d.jpg", "other", keep=[]) == [PurePosixPath("d.png")]


def test_a_manifest_mostly_of_superseded_lines_is_rewritten_with_the_same_records(tmp_path, monkeypatch):
    """Reruns with other edges add a line per output each time: once the lines pass twice the live records (and
    COMPACT_MIN_LINES), loading rewrites the file to the live records, which read back the same; a short file, or
    one whose folder refuses the new file, is left as it is."""
    import matting.batch_manifest as batch_manifest
    from matting.batch_manifest import Manifest

    monkeypatch.setattr(batch_manifest, "COMPACT_MIN_LINES", 10)
    sink = open_sink(tmp_path / "out")
    manifest = Manifest.load(sink, overwrite=False)
    for run in range(4):   # 5 outputs, each made four times; one removed as stale
        for i in range(5):
            manifest.add(PurePosixPath(f"p{i}.png"), f"p{i}.jpg", f"s{run}", f"recipe{run % 2}")
    manifest.forget(PurePosixPath("p4.png"))
    manifest.close()
    lines = sink.manifest_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 21

    import matting.batch_outputs as batch_outputs   # where the rewrite's rename happens (write_atomic)

    monkeypatch.setattr(batch_outputs.os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(13, "no")))
    assert len(Manifest.load(sink, overwrite=False).records) == 4
    assert sink.manifest_path.read_text(encoding="utf-8").splitlines() == lines   # kept, and no part file left
    assert [p.name for p in sink.manifest_path.parent.iterdir()] == [sink.manifest_path.name]
    monkeypatch.undo()
    monkeypatch.setattr(batch_manifest, "COMPACT_MIN_LINES", 10)

    reloaded = Manifest.load(sink, overwrite=False)
    assert sink.manifest_path.read_text(encoding="utf-8").count("\n") == 4   # 21 > 2 x 4 + 10: rewritten
    assert reloaded.made_same(PurePosixPath("p2.png"), "p2.jpg", "s3", "recipe1")
    again = Manifest.load(sink, overwrite=False)
    assert again.records == reloaded.records and "p4.png" not in again.records
    again.add(PurePosixPath("p9.png"), "p9.jpg", "s", "r")   # appending goes on after a rewrite
    again.close()
    assert len(Manifest.load(sink, overwrite=False).records) == 5
    monkeypatch.setattr(batch_manifest, "COMPACT_MIN_LINES", 1000)
    for _ in range(3):
        again.add(PurePosixPath("p9.png"), "p9.jpg", "s", "r")
    again.close()
    Manifest.load(sink, overwrite=False)
    assert sink.manifest_path.read_text(encoding="utf-8").count("\n") == 8   # below the minimum: as it was


def test_the_manifest_survives_overwrite_on_a_fresh_folder_and_a_cut_line(tmp_path):
    """--overwrite on an output that never had a manifest starts empty; a line cut short by a killed run is
    skipped and the records after it still count."""
    from matting.batch_manifest import Manifest

    assert Manifest.load(open_sink(tmp_path / "fresh"), overwrite=True).records == {}
    sink = open_sink(tmp_path / "out")
    manifest = Manifest.load(sink, overwrite=False)
    manifest.add(PurePosixPath("a.png"), "a.jpg", "s", "r")
    with open(sink.manifest_path, "a", encoding="utf-8") as handle:
        handle.write('{"name": "b.png", "inp\n')
    manifest.add(PurePosixPath("c.png"), "c.jpg", "s", "r")
    assert set(Manifest.load(sink, overwrite=False).records) == {"a.png", "c.png"}
    assert Manifest.load(sink, overwrite=True).records == {} and not sink.manifest_path.exists()


def test_an_output_folder_deleted_during_a_run_is_made_again(tmp_path):
    """prepared() makes the folder each time it is asked: one deleted while a run goes on (a user tidying up)
    comes back for the next image instead of every later image of that folder failing."""
    import shutil

    sink = FolderSink(tmp_path / "out")
    assert sink.prepared(PurePosixPath("sub/a.png")).parent.is_dir()
    shutil.rmtree(tmp_path / "out" / "sub")
    target = sink.prepared(PurePosixPath("sub/b.png"))
    assert target.parent.is_dir() and target == tmp_path / "out" / "sub" / "b.png"
