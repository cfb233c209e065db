"""Batch engine: discovery, naming, zip safety, resume, cancel, per-image failures, output kinds.

Images are tiny and generated here; the network still runs (at 320 x 320 whatever the input), so each test keeps
its image count to a handful and all share one CPU pipeline.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from matting.batch import BatchResult, run_batch
from matting.batch_inputs import MAX_ENTRY_BYTES, discover, safe_member_path
from matting.batch_outputs import MANIFEST_NAME as MANIFEST, OutputError, allocate_names
from matting.errors import InvalidParameterError
from matting.settings import EdgeSettings

W, H = 64, 48


def image_bytes(fmt: str = "JPEG", size=(W, H), seed: int = 0, exif=None) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = (250, 40, 40)
    buffer = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(pixels).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_name(summary) -> dict[str, BatchResult]:
    return {r.name: r for r in summary.results}


def files_under(folder: Path) -> set[str]:
    """The outputs in a folder, without the batch's record of them (batch_outputs.MANIFEST_NAME)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}


# ---------------------------------------------------------------- discovery and naming (no network)
@pytest.mark.parametrize("name, expected", [
    ("../x.jpg", "x.jpg"), ("/etc/x.jpg", "etc/x.jpg"), ("a/../../b/x.jpg", "a/b/x.jpg"),
    ("C:\\photos\\x.jpg", "photos/x.jpg"), ("./a//x.jpg", "a/x.jpg"), ("..", None), ("", None),
])
def test_zip_member_names_cannot_escape(name, expected):
    result = safe_member_path(name)
    assert (str(result) if result else None) == expected


def test_same_stems_get_numbered_deterministically():
    rels = [PurePosixPath(p) for p in ("x", "x", "a/x", "A/X", "x_alpha", "x_2")]
    names = allocate_names(rels, ("cutout", "alpha"), "jpg")
    cutouts = [str(n["cutout"]) for n in names]
    assert cutouts == ["x.png", "x_2.png", "a/x.png", "A/X_2.png", "x_alpha_2.png", "x_2_2.png"]
    assert names == allocate_names(rels, ("cutout", "alpha"), "jpg")  # same inputs, same names: resume works
    all_names = [str(v).casefold() for n in names for v in n.values()]
    assert len(all_names) == len(set(all_names))


def test_many_inputs_of_one_name_are_numbered_in_one_pass_with_the_same_names_as_ever(monkeypatch):
    """Photos of one name from many folders (``matting day1 day2 ...``, or ``*/image.jpg``): each name is tried from
    the number the last one of its name got, not from 1 again (which cost k^2 tries: 4000 of one name took 59 s),
    and the names are those of trying from 1 (resume depends on them): against that, on random collisions."""
    import random

    from matting import batch_outputs

    rng = random.Random(3)
    words = ["x", "X", "x_2", "x_alpha", "a/x", "A/x", "y", "y_2", "y_3", "x_3"]
    rels = [PurePosixPath(rng.choice(words)) for _ in range(600)]
    kinds = ("cutout", "alpha", "composite")
    taken, reference = set(), []
    for rel in rels:   # the plain rule: the first free number from 1
        n = 1
        while True:
            names = batch_outputs.output_names(rel if n == 1 else rel.with_name(f"{rel.name}_{n}"), kinds, "png")
            if not {str(v).casefold() for v in names.values()} & taken:
                break
            n += 1
        taken |= {str(v).casefold() for v in names.values()}
        reference.append(names)
    assert allocate_names(rels, kinds, "png") == reference

    tries = []
    real = batch_outputs.output_names
    monkeypatch.setattr(batch_outputs, "output_names", lambda *args: tries.append(1) or real(*args))
    names = allocate_names([PurePosixPath("image")] * 2000, ("cutout",), "jpg")
    assert str(names[-1]["cutout"]) == "image_2000.png" and len(tries) == 2000


def test_the_feeder_holds_only_the_decodes_in_flight_not_one_per_image_of_the_run(tmp_path, pipe, monkeypatch):
    """The feeder waits for its last decodes at the end; it must not keep every image's finished decode until
    then (1.7 KB an image: 171 MB at 100,000)."""
    from matting import batch

    for i in range(40):
        write(tmp_path / "in" / f"p{i:02d}.jpg", image_bytes(seed=i))
    waited, real_wait = [], batch.wait
    monkeypatch.setattr(batch, "wait", lambda futures: waited.append(len(futures)) or real_wait(futures))
    summary = run_batch([tmp_path / "in"], tmp_path / "out", pipeline=pipe, batch_size=1, workers=1)
    assert summary.done == 40 and len(waited) == 1
    assert waited[0] < 20, waited   # twice the images in flight at most (here 5 of them), not the run's 40


def test_folder_discovery_takes_images_only_and_recurses_on_request(tmp_path):
    write(tmp_path / "in" / "top.jpg", b"x")
    write(tmp_path / "in" / "notes.txt", b"x")
    write(tmp_path / "in" / ".hidden.jpg", b"x")
    write(tmp_path / "in" / "sub" / "deep.PNG", b"x")
    flat = discover([tmp_path / "in"]).items
    deep = discover([tmp_path / "in"], recursive=True).items
    assert [i.name for i in flat] == ["top.jpg"]
    assert [i.name for i in deep] == ["top.jpg", "sub/deep.PNG"]  # a folder's files, then its sub-folders
    assert str(deep[1].rel) == "sub/deep"


def test_missing_inputs_and_empty_globs_are_failures(tmp_path):
    items = discover([tmp_path / "nope.jpg", str(tmp_path / "*.jpg"), tmp_path]).items
    assert [i.error is not None for i in items] == [True, True, True]
    assert "not found" in items[0].error and "match" in items[1].error and "no images" in items[2].error


def test_glob_keeps_structure_below_its_fixed_part(tmp_path):
    write(tmp_path / "p" / "a" / "x.jpg", b"x")
    write(tmp_path / "p" / "b" / "x.jpg", b"x")
    write(tmp_path / "p" / "b" / "x.txt", b"x")
    items = discover([str(tmp_path / "p" / "*" / "x.*")]).items
    assert [str(i.rel) for i in items] == ["a/x", "b/x"]


def test_zip_bomb_entries_fail_alone(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.jpg", image_bytes())
        zf.writestr("bomb.bmp", bytes(4 << 20))  # 4 MiB of zeros: ratio ~1000:1
    found = discover([archive])
    try:
        errors = {i.name: i.error for i in found.items}
    finally:
        found.close()
    assert errors["ok.jpg"] is None
    assert "zip bomb" in errors["bomb.bmp"]


def test_zip_entry_declaring_a_huge_size_is_refused(tmp_path, monkeypatch):
    import matting.batch_inputs as bi

    monkeypatch.setattr(bi, "MAX_ENTRY_BYTES", 1000)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.png", bytes(2000))
    found = bi.discover([archive])
    assert "over the limit" in found.items[0].error
    found.close()
    assert MAX_ENTRY_BYTES >= 100_000_000 * 4  # the real limit holds a 100 MP RGBA image


# ---------------------------------------------------------------- end to end
def test_nested_folders_recursive_off_then_on(pipe, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write(src / "top.jpg", image_bytes(seed=1))
    write(src / "a" / "x.jpg", image_bytes(seed=2))
    write(src / "b" / "x.png", image_bytes("PNG", seed=3))
    flat = run_batch([src], out, pipeline=pipe)
    assert (flat.done, flat.skipped, flat.failed) == (1, 0, 0)
    assert files_under(out) == {"top.png"}
    deep = run_batch([src], out, pipeline=pipe, recursive=True)
    assert (deep.done, deep.skipped, deep.failed) == (2, 1, 0)
    assert files_under(out) == {"top.png", "a/x.png", "b/x.png"}  # same stems apart: structure kept


def test_zip_input_entries_stay_inside_the_output(pipe, tmp_path):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../x.jpg", image_bytes(seed=1))
        zf.writestr("sub/y.png", image_bytes("PNG", seed=2))
        zf.writestr("readme.txt", b"not an image, ignored")
        zf.writestr("__MACOSX/sub/._y.png", b"resource fork, ignored")
    out = tmp_path / "deep" / "out"
    before = files_under(tmp_path)
    summary = run_batch([archive], out, pipeline=pipe)
    assert (summary.done, summary.failed) == (2, 0)
    assert files_under(out) == {"x.png", "sub/y.png"}
    created = files_under(tmp_path) - before
    assert created == {"deep/out/x.png", "deep/out/sub/y.png"}  # nothing landed outside the output folder
    assert not (tmp_path / "x.png").exists()


def test_bad_files_fail_alone_with_reasons(pipe, tmp_path):
    good = write(tmp_path / "good.jpg", image_bytes())
    truncated = write(tmp_path / "cut.jpg", image_bytes()[:300])
    text = write(tmp_path / "notes.jpg", b"hello, this is not a picture\n" * 10)
    missing = tmp_path / "missing.jpg"
    summary = run_batch([truncated, good, text, missing], tmp_path / "out", pipeline=pipe)
    results = by_name(summary)
    assert (summary.done, summary.failed) == (1, 3)
    assert results["good.jpg"].status == "done"
    assert "damaged or incomplete" in results["cut.jpg"].error or "ends before" in results["cut.jpg"].error
    assert "not an image" in results["notes.jpg"].error
    assert "not found" in results[str(missing)].error
    for r in summary.results:
        assert r.error is None or "\n" not in r.error
    assert files_under(tmp_path / "out") == {"good.png"}
    # each failure says its kind as a stable code (the web app translates those), and the summary keeps the
    # order the inputs were given in
    assert results["cut.jpg"].error_code == "corrupt_image" and results["good.jpg"].error_code is None
    assert results["notes.jpg"].error_code == "unsupported_format"
    assert results[str(missing)].error_code == "input_error"
    assert [r.name for r in summary.results] == ["cut.jpg", "good.jpg", "notes.jpg", str(missing)]


def test_two_inputs_with_the_same_stem_do_not_overwrite(pipe, tmp_path):
    a = write(tmp_path / "x.jpg", image_bytes(size=(64, 48)))
    b = write(tmp_path / "x.png", image_bytes("PNG", size=(40, 30)))
    summary = run_batch([a, b], tmp_path / "out", pipeline=pipe)
    results = by_name(summary)
    assert results["x.jpg"].outputs == [tmp_path / "out" / "x.png"]
    assert results["x.png"].outputs == [tmp_path / "out" / "x_2.png"]
    assert Image.open(tmp_path / "out" / "x.png").size == (64, 48)
    assert Image.open(tmp_path / "out" / "x_2.png").size == (40, 30)


def test_resume_skips_finished_work_and_overwrite_redoes_it(pipe, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write(src / f"p{i}.jpg", image_bytes(seed=i))
    first = run_batch([src], out, pipeline=pipe, kinds=("cutout", "alpha"))
    assert first.done == 2
    calls = pipe.runner.calls
    again = run_batch([src], out, pipeline=pipe, kinds=("cutout", "alpha"))
    assert (again.done, again.skipped) == (0, 2) and pipe.runner.calls == calls
    (out / "p1_alpha.png").unlink()  # one output of one image missing: only that image is redone
    partial = run_batch([src], out, pipeline=pipe, kinds=("cutout", "alpha"))
    assert (partial.done, partial.skipped) == (1, 1) and by_name(partial)["p1.jpg"].status == "done"
    forced = run_batch([src], out, pipeline=pipe, kinds=("cutout", "alpha"), overwrite=True)
    assert (forced.done, forced.skipped) == (2, 0)
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MANIFEST]  # no temporary files left


def test_the_record_is_on_disk_as_each_output_is_written_and_closed_after_the_run(pipe, tmp_path):
    import psutil

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write(src / f"p{i}.jpg", image_bytes(seed=i))
    lines_seen = []
    run_batch([src], out, pipeline=pipe, on_result=lambda *_: lines_seen.append(
        len((out / MANIFEST).read_text(encoding="utf-8").splitlines())))
    assert lines_seen == [1, 2, 3]   # a run killed after any image leaves its record behind
    assert str(out / MANIFEST) not in {f.path for f in psutil.Process().open_files()}


def test_zip_output_is_written_whole_and_resumes(pipe, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out.zip"
    write(src / "a" / "x.jpg", image_bytes(seed=1))
    write(src / "b" / "x.jpg", image_bytes(seed=2))
    first = run_batch([src], out, pipeline=pipe, recursive=True)
    assert first.done == 2
    assert sorted(map(str, by_name(first)["a/x.jpg"].outputs)) == ["a/x.png"]
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["a/x.png", "b/x.png"]
        assert Image.open(io.BytesIO(zf.read("a/x.png"))).mode == "RGBA"
    write(src / "c.jpg", image_bytes(seed=3))
    second = run_batch([src], out, pipeline=pipe, recursive=True)
    assert (second.done, second.skipped) == (1, 2)
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["a/x.png", "b/x.png", "c.png"]
        assert zf.testzip() is None
    # no temporary archive left; the record of the outputs sits beside the archive
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.zip{MANIFEST}", "in", "out.zip"]


def test_output_that_is_a_plain_file_is_a_setup_error(pipe, tmp_path):
    target = write(tmp_path / "taken", b"x")
    with pytest.raises(OutputError):
        run_batch([write(tmp_path / "x.jpg", image_bytes())], target, pipeline=pipe)
    with pytest.raises(InvalidParameterError):
        run_batch([tmp_path / "x.jpg"], tmp_path / "out", pipeline=pipe, kinds=("sticker",))


def test_cancel_from_on_result_stops_early(pipe, tmp_path):
    src = tmp_path / "in"
    for i in range(6):
        write(src / f"p{i}.jpg", image_bytes(seed=i))
    cancel = threading.Event()
    seen = []

    def on_result(result, finished, total):
        seen.append((result.status, finished, total))
        cancel.set()

    summary = run_batch([src], tmp_path / "out", pipeline=pipe, cancel=cancel, on_result=on_result)
    assert summary.cancelled
    assert seen[0] == ("done", 1, 6)
    assert summary.done < 6 and len(summary.results) == len(seen) < 6
    for result in summary.results:  # whatever was reported done is complete on disk
        for path in result.outputs:
            assert Image.open(path).size == (W, H)


def test_on_result_runs_in_the_callers_thread_in_completion_order(pipe, tmp_path):
    src = tmp_path / "in"
    for i in range(2):
        write(src / f"p{i}.jpg", image_bytes(seed=i))
    write(src / "bad.jpg", b"not an image at all")
    threads, counts = set(), []
    summary = run_batch([src], tmp_path / "out", pipeline=pipe,
                        on_result=lambda r, n, t: (threads.add(threading.get_ident()), counts.append((n, t))))
    assert threads == {threading.get_ident()}
    assert counts == [(1, 3), (2, 3), (3, 3)]
    assert summary.stage_busy["infer"] > 0 and summary.limiting_stage() in summary.stage_busy


def test_output_kinds_sizes_and_modes(pipe, tmp_path):
    src = write(tmp_path / "photo.jpg", image_bytes())
    out = tmp_path / "out"
    summary = run_batch([src], out, pipeline=pipe, kinds=("cutout", "alpha", "composite"), background="#00ff00",
                        settings=EdgeSettings(feather=1))
    result = summary.results[0]
    assert result.size == (W, H) and result.ms > 0
    assert [p.name for p in result.outputs] == ["photo.png", "photo_alpha.png", "photo_composite.jpg"]
    modes = {p.name: (Image.open(p).mode, Image.open(p).size, Image.open(p).format) for p in result.outputs}
    assert modes == {"photo.png": ("RGBA", (W, H), "PNG"), "photo_alpha.png": ("L", (W, H), "PNG"),
                     "photo_composite.jpg": ("RGB", (W, H), "JPEG")}
    png = run_batch([src], out, pipeline=pipe, kinds=("composite",), composite_format="png")
    composite = Image.open(png.results[0].outputs[0])
    assert (png.results[0].outputs[0].name, composite.mode, composite.format) == ("photo_composite.png", "RGB", "PNG")


def test_exif_rotated_input_gives_upright_output(pipe, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: upright it is portrait
    src = write(tmp_path / "rotated.jpg", image_bytes(size=(W, H), exif=exif))
    summary = run_batch([src], tmp_path / "out", pipeline=pipe, kinds=("cutout", "alpha"))
    assert summary.results[0].size == (H, W)
    assert Image.open(tmp_path / "out" / "rotated.png").size == (H, W)
    assert Image.open(tmp_path / "out" / "rotated_alpha.png").size == (H, W)


@pytest.mark.parametrize("decontaminate, streams", [(False, 1), (True, 1), (False, 2)])
def test_gpu_style_run_gives_identical_files(pipe, tmp_path, monkeypatch, decontaminate, streams):
    """The GPU path (render threads taking whole batches, same-size images rendered as one stack, encoder
    processes; with ``streams`` inference threads) must write what the plain path writes; forced on the CPU."""
    import matting.batch_runtime as rt

    src = tmp_path / "in"
    write(src / "a.jpg", image_bytes(seed=1))
    write(src / "c.jpg", image_bytes(seed=2))  # same size as a.jpg: may share a render stack with it
    rgba = Image.new("RGBA", (W, H), (200, 30, 30, 255))
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    write(src / "b.png", buffer.getvalue())  # an input with its own alpha
    kinds = ("cutout", "alpha", "composite")
    settings = EdgeSettings(decontaminate=decontaminate)
    plain = run_batch([src], tmp_path / "plain", pipeline=pipe, kinds=kinds, settings=settings)
    monkeypatch.setattr(rt, "is_gpu", lambda device: True)
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "2")
    monkeypatch.setenv(rt.GPU_INFER_THREADS_ENV, str(streams))
    gpu_style = run_batch([src], tmp_path / "gpu", pipeline=pipe, kinds=kinds, settings=settings)
    assert plain.done == gpu_style.done == 3
    assert gpu_style.stage_threads["render"] == streams * rt.GPU_RENDER_THREADS
    assert gpu_style.stage_threads["infer"] == streams
    for name in ("a.png", "a_alpha.png", "b.png", "b_alpha.png", "c.png", "c_alpha.png"):
        assert (tmp_path / "plain" / name).read_bytes() != b""
        a = np.asarray(Image.open(tmp_path / "plain" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "gpu" / name)).astype(int)
        # GPU style batches the network (batch 2 rounds ~1e-5 away from batch 1 on the CPU): a level at most
        assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3, name


@pytest.mark.parametrize("output", ["out", "out.zip"])
def test_pngs_encoded_on_the_device_hold_the_cpu_encoders_pixels(pipe, tmp_path, monkeypatch, output):
    """MATTING_PNG_ENCODER=device on a GPU: the render stacks' cutouts and mattes are encoded where they were
    rendered (matting.png_device) and written as they came; other files by the CPU encoders. Forced here on the
    CPU: the same pixels as the CPU encoders' files, other bytes, and an image with its own alpha (rendered
    alone) still written."""
    import matting.batch_runtime as rt
    import matting.pipeline as pipeline_module

    src = tmp_path / "in"
    write(src / "a.jpg", image_bytes(seed=1))
    write(src / "c.jpg", image_bytes(seed=2))
    rgba = Image.new("RGBA", (W, H), (200, 30, 30, 255))
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    write(src / "b.png", buffer.getvalue())
    kinds = ("cutout", "alpha", "composite")
    monkeypatch.setattr(rt, "is_gpu", lambda device: True)
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "0")
    stacks = []
    encode = pipeline_module.encode_png_stack
    monkeypatch.setattr(pipeline_module, "encode_png_stack",
                        lambda images: stacks.append(len(images)) or encode(images))

    def files(folder_or_zip: Path) -> dict[str, bytes]:
        if folder_or_zip.suffix == ".zip":
            with zipfile.ZipFile(folder_or_zip) as archive:
                return {n: archive.read(n) for n in archive.namelist() if not n.startswith(".")}
        return {p.name: p.read_bytes() for p in folder_or_zip.iterdir() if not p.name.startswith(".")}

    monkeypatch.setenv("MATTING_PNG_ENCODER", "cpu")
    on_cpu = run_batch([src], tmp_path / "cpu" / output, pipeline=pipe, kinds=kinds, batch_size=2)
    assert stacks == []
    monkeypatch.setenv("MATTING_PNG_ENCODER", "device")
    on_device = run_batch([src], tmp_path / "device" / output, pipeline=pipe, kinds=kinds, batch_size=2)
    assert on_cpu.done == on_device.done == 3 and sum(stacks) >= 4, stacks   # a and c: cutout and matte each
    cpu_files, device_files = files(tmp_path / "cpu" / output), files(tmp_path / "device" / output)
    assert set(cpu_files) == set(device_files) and len(cpu_files) == 9
    for name, data in cpu_files.items():
        a = np.asarray(Image.open(io.BytesIO(data)))
        b = np.asarray(Image.open(io.BytesIO(device_files[name])))
        assert a.shape == b.shape and np.array_equal(a, b), name
    assert device_files["a.png"] != cpu_files["a.png"] and device_files["c_alpha.png"] != cpu_files["c_alpha.png"]


def test_a_rerun_with_another_background_crop_or_engine_redoes_the_outputs(pipe, tmp_path):
    """Resume keys on everything that shapes an output: the same options skip, another background, crop, composite
    format or engine (here the working size) redo, and the output made the old way is removed."""
    from matting.crop import CropMargin
    from matting.pipeline import Pipeline

    src, out = tmp_path / "in", tmp_path / "out"
    write(src / "p.jpg", image_bytes(seed=7))

    def run(background=(255, 0, 0), crop=None, fmt="jpg", engine=pipe):
        return run_batch([src], out, pipeline=engine, kinds=("composite",), background=background, crop=crop,
                         composite_format=fmt)

    assert run().done == 1 and run().skipped == 1
    assert run(background=(0, 0, 255)).done == 1
    assert run(background=(0, 0, 255), crop=CropMargin(4)).done == 1
    assert run(background=(0, 0, 255), crop=CropMargin(4), fmt="png").done == 1
    assert files_under(out) == {"p_composite.png"}   # the JPEG made the old way is gone
    smaller = Pipeline(device="cpu", max_side=64, warm_up=False)
    assert run(background=(0, 0, 255), crop=CropMargin(4), fmt="png", engine=smaller).done == 1


def test_the_summarys_seconds_are_the_runs_wall_time(pipe, tmp_path):
    import time

    src = tmp_path / "in"
    write(src / "p.jpg", image_bytes(seed=8))
    start = time.perf_counter()
    summary = run_batch([src], tmp_path / "out", pipeline=pipe)
    assert 0 < summary.seconds <= time.perf_counter() - start
    assert summary.images_per_second == pytest.approx(1 / summary.seconds)


def test_an_input_that_cannot_be_found_fails_alone_and_the_inputs_after_it_still_run(pipe, tmp_path):
    src = tmp_path / "in"
    write(src / "p.jpg", image_bytes(seed=9))
    summary = run_batch([tmp_path / "missing.jpg", src], tmp_path / "out", pipeline=pipe)
    assert (summary.done, summary.failed) == (1, 1) and by_name(summary)["p.jpg"].status == "done"


def test_every_image_of_a_batch_gets_the_matte_it_gets_alone(device, tmp_path):
    """On each device the tests have (on CUDA the real GPU path: the inference thread's stream, render threads on
    streams of their own taking stacks of same-size images, page-locked downloads, encoder helpers): each image's
    matte file holds what the Pipeline renders for that image alone. A render that read another image's matte, or
    one the network had not finished, would be far off (a mix-up moves the alpha by 252-255 levels). With one image
    per network call the files are exactly the single renders; batching the network changes its fp16 sums on CUDA
    (on the H200: 1 level on up to 3.2 % of a matte's pixels, 2 on 0.43 % of one, session 27), not on the CPU."""
    from PIL import ImageOps

    from matting.pipeline import Pipeline

    pipe = Pipeline(device=str(device))
    examples = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.[jp][pn]g"))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):   # two sizes, so that same-size images share render stacks; each picture distinct
        photo = Image.open(examples[i % len(examples)]).convert("RGB").resize((320, 240) if i % 2 else (240, 320))
        photo = (photo, ImageOps.mirror(photo), ImageOps.flip(photo))[(i // len(examples)) % 3]
        photo.save(src / f"p{i:02d}.jpg", quality=95)
    for batch_size in (1, 4):
        summary = run_batch([src], tmp_path / f"out{batch_size}", pipeline=pipe, kinds=("cutout", "alpha"),
                            batch_size=batch_size)
        assert summary.done == 12 and summary.failed == 0
    settings = EdgeSettings()
    for path in sorted(src.glob("*.jpg")):
        alone = pipe.render(pipe.matte(path.read_bytes()), settings, want_rgba=False).alpha.astype(int)
        assert alone.std() > 20, path.name   # a real matte, not a flat one that would match anything
        one = np.asarray(Image.open(tmp_path / "out1" / f"{path.stem}_alpha.png")).astype(int)
        assert np.array_equal(one, alone), (path.name, np.abs(one - alone).max())
        batched = np.asarray(Image.open(tmp_path / "out4" / f"{path.stem}_alpha.png")).astype(int)
        assert batched.shape == alone.shape, path.name
        diff = np.abs(batched - alone)
        assert diff.max() <= 3 and (diff > 1).mean() < 0.01 and (diff > 0).mean() < 0.1, \
            (path.name, diff.max(), (diff > 1).mean(), (diff > 0).mean())
        cutout = np.asarray(Image.open(tmp_path / "out4" / f"{path.stem}.png"))
        assert np.array_equal(cutout[..., 3], batched), path.name   # the cutout is the same render's
