"""`python -m matting ... --ray` (matting/ray_batch.py) against the local engine, on a private loopback Ray.

The same files, names, failures, exit status and resume as the local batch; an actor killed mid-run still yields
every image (Ray restarts it and retries its batch). Ray is started once for the module (about 5 s)."""

from __future__ import annotations

import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matting import cli

ray = pytest.importorskip("ray", reason="requirements-ray.txt is not installed")
psutil = pytest.importorskip("psutil")

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def private_ray():
    from matting.ray_runtime import ray_session

    with ray_session("local", num_cpus=2) as session:
        yield session


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four example photos, two in a sub-folder, and a file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(EXAMPLES.glob("*.png"))[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "more").mkdir()
    for path in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(path, folder / "more" / path.name)
    shutil.copy(sorted(EXAMPLES.glob("*.png"))[2], folder / "more" / "third.png")
    (folder / "notes.jpg").write_text("not an image")
    return folder


def files_of(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file() and p.name[0] != "."}


def assert_same_images(ours: dict[str, bytes], theirs: dict[str, bytes]) -> None:
    """Same names; every alpha (a matte, or a cutout's alpha channel) within 1 level; colours within 1 level
    where opaque enough to see (a composite is a JPEG of nearly equal pixels: mean within 1 level)."""
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        a = np.asarray(Image.open(__import__("io").BytesIO(ours[name]))).astype(int)
        b = np.asarray(Image.open(__import__("io").BytesIO(theirs[name]))).astype(int)
        assert a.shape == b.shape, name
        if name.endswith("_composite.jpg"):
            assert np.abs(a - b).mean() <= 1.0, name
        elif a.ndim == 2:
            assert np.abs(a - b).max() <= 1, name
        else:
            assert np.abs(a[..., 3] - b[..., 3]).max() <= 1, name


def read_folder(root: Path) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in files_of(root).items()}


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_folder_through_ray_gives_the_local_engines_files_failures_and_exit_status(private_ray, photos, tmp_path,
                                                                                        capsys):
    args = [str(photos), "-r", "--alpha", "--composite", "--background", "30,60,90", "--no-progress"]
    assert cli.main([*args, "-o", str(tmp_path / "local")]) == cli.EXIT_FAILED
    local_err = capsys.readouterr().err
    assert cli.main([*args, "-o", str(tmp_path / "ray"), "--ray"]) == cli.EXIT_FAILED
    ray_err = capsys.readouterr().err
    assert len(files_of(tmp_path / "ray")) == 12   # 4 photos x (cutout, alpha, composite)
    assert_same_images(read_folder(tmp_path / "ray"), read_folder(tmp_path / "local"))
    failure = "failed: notes.jpg: not an image: the file is plain text"
    assert failure in local_err and failure in ray_err
    assert "4 done, 0 skipped, 1 failed" in ray_err and "on Ray, 1 actor" in ray_err

    # A rerun on Ray resumes: everything is skipped, from the record the Ray run wrote.
    assert cli.main([*args, "-o", str(tmp_path / "ray"), "--ray"]) == cli.EXIT_FAILED
    assert "0 done, 4 skipped, 1 failed" in capsys.readouterr().err


def test_an_output_name_that_is_a_link_is_replaced_not_written_through_as_locally(private_ray, tmp_path, capsys):
    """An output folder may hold a link where an output goes (out/x.png -> a file elsewhere): the run replaces
    the link with its cutout and leaves the file it pointed to alone, on Ray as in the local engine."""
    photo = sorted(EXAMPLES.glob("*.jpg"))[0]
    for engine in ("local", "ray"):
        elsewhere = tmp_path / f"{engine}_precious.png"
        elsewhere.write_bytes(b"keep me")
        out = tmp_path / engine
        out.mkdir()
        (out / f"{photo.stem}.png").symlink_to(elsewhere)
        args = [str(photo), "-o", str(out), "--no-progress"] + (["--ray"] if engine == "ray" else [])
        assert cli.main(args) == cli.EXIT_OK, capsys.readouterr().err
        written = out / f"{photo.stem}.png"
        assert elsewhere.read_bytes() == b"keep me", engine
        assert not written.is_symlink() and Image.open(written).mode == "RGBA", engine


def test_a_zip_through_ray_into_a_zip_equals_the_local_engines(private_ray, photos, tmp_path, capsys):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, path in files_of(photos).items():
            out.write(path, f"set/{name}")
    args = [str(archive), "--alpha", "--no-progress", "--feather", "2", "--erode", "-3"]
    assert cli.main([*args, "-o", str(tmp_path / "local.zip")]) == cli.EXIT_FAILED
    assert cli.main([*args, "-o", str(tmp_path / "ray.zip"), "--ray"]) == cli.EXIT_FAILED
    ours = read_zip(tmp_path / "ray.zip")
    assert len(ours) == 8 and "set/more/rocket_alpha.png" in ours
    assert_same_images(ours, read_zip(tmp_path / "local.zip"))
    assert "failed: set/notes.jpg: not an image" in capsys.readouterr().err


def test_a_url_of_a_folder_reads_as_the_folder_does(private_ray, photos, tmp_path, capsys):
    """Object-store URLs are read through pyarrow's file systems (Ray Data's); file:// is one of them, with no
    network. The same outputs as the folder's path, and a rerun resumes by the URL's size and time."""
    args = ["-r", "--alpha", "--no-progress", "--ray"]
    assert cli.main([str(photos), *args, "-o", str(tmp_path / "by_path")]) == cli.EXIT_FAILED
    assert cli.main([photos.as_uri(), *args, "-o", str(tmp_path / "by_url")]) == cli.EXIT_FAILED
    assert_same_images(read_folder(tmp_path / "by_url"), read_folder(tmp_path / "by_path"))
    capsys.readouterr()
    assert cli.main([photos.as_uri(), *args, "-o", str(tmp_path / "by_url")]) == cli.EXIT_FAILED
    assert "0 done, 4 skipped, 1 failed" in capsys.readouterr().err
    assert cli.main([(photos / "missing").as_uri(), *args, "-o", str(tmp_path / "none")]) == cli.EXIT_FAILED
    assert f"failed: {(photos / 'missing').as_uri()}: nothing at" in capsys.readouterr().err


def processes_titled(text: str) -> list:
    """The processes whose command line holds ``text``: Ray titles a worker by its actor class (``ray::MatteActor``)
    or by the task it is running (``ray::MapBatches(decode_matte_encode)``)."""
    return [process for process in psutil.process_iter(["cmdline"])
            if text in " ".join(process.info["cmdline"] or ())]


def matte_actor_processes() -> list:
    return processes_titled("MatteActor")


def no_matte_actor_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while matte_actor_processes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def many_photos(folder: Path, copies: int) -> Path:
    folder.mkdir()
    for i in range(copies):
        for path in EXAMPLES.glob("*.png"):
            shutil.copy(path, folder / f"{i:02d}_{path.name}")
    return folder


def test_an_actor_killed_mid_run_still_yields_every_image(private_ray, tmp_path):
    from matting.batch import run_batch
    from matting.ray_batch import ray_batch_engine

    photos = many_photos(tmp_path / "many", 12)
    killed = []

    def kill_the_actor_once(result, finished, total):
        if not killed:
            actors = matte_actor_processes()
            assert actors, "no MatteActor process found"
            for process in actors:
                process.kill()
            killed.extend(actors)

    with ray_batch_engine("local", {"device": "cpu"}) as (engine, executor):
        summary = run_batch([photos], tmp_path / "out", pipeline=engine, executor=executor, batch_size=1,
                            on_result=kill_the_actor_once)
        deadline = time.monotonic() + 60   # Ray restarts a dead actor at once, needed or not: wait for it
        while not (restarted := [p for p in matte_actor_processes() if p.pid not in {k.pid for k in killed}]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    assert killed
    assert engine.pool.actors == [] and engine.pool._workers == []   # let go of before Ray ended (ray_runtime)
    assert (summary.done, summary.failed, summary.cancelled) == (36, 0, False)
    assert len(files_of(tmp_path / "out")) == 36
    assert len(restarted) == 1   # Ray restarted the actor in a new process: the engine's pool did not shrink


def test_a_task_worker_killed_mid_run_still_yields_every_image_once(private_ray, tmp_path):
    """Ray Data runs the task again; the images it had already handed on are not counted twice."""
    from matting.batch import run_batch
    from matting.ray_batch import ray_batch_engine

    photos = many_photos(tmp_path / "many", 12)
    killed = []

    def kill_a_task_once(result, finished, total):
        deadline = time.monotonic() + 10   # a task may be between batches: wait for the next
        while not killed and time.monotonic() < deadline:
            for process in processes_titled("decode_matte_encode"):
                process.kill()
                killed.append(process)
            time.sleep(0.01)

    with ray_batch_engine("local", {"device": "cpu"}) as (engine, executor):
        summary = run_batch([photos], tmp_path / "out", pipeline=engine, executor=executor, batch_size=12,
                            on_result=kill_a_task_once)
    assert killed
    names = [result.name for result in summary.results]
    assert (summary.done, summary.failed, summary.cancelled) == (36, 0, False)
    assert len(names) == len(set(names)) == 36
    assert len(files_of(tmp_path / "out")) == 36


def test_a_task_hands_on_its_first_image_before_it_has_encoded_the_rest(private_ray, tmp_path):
    from matting.batch import run_batch
    from matting.ray_batch import ray_batch_engine

    photos = tmp_path / "noise"   # noise: slow to encode as PNG, so the task's encoding takes a while
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (1000, 1400, 3), np.uint8)).save(photos / f"{i:02d}.png")
    first_at = []
    with ray_batch_engine("local", {"device": "cpu"}) as (engine, executor):
        summary = run_batch([photos], tmp_path / "out", pipeline=engine, executor=executor, batch_size=12,
                            workers=1, on_result=lambda *_: first_at or first_at.append(time.time()))
    assert summary.done == 12
    written = sorted(path.stat().st_mtime for path in files_of(tmp_path / "out").values())
    # one task took all 12: the driver had the first while the task still wrote the others
    assert first_at[0] < written[-1], (first_at, written)


def test_the_actors_start_with_the_engine_serve_every_run_and_go_with_it(private_ray, photos, tmp_path):
    """The model loads once, before the first run (as the local Pipeline does), not inside each run."""
    from ray.data import DataContext

    from matting.batch import run_batch
    from matting.ray_batch import ray_batch_engine

    assert no_matte_actor_within(30)   # an earlier test's engine may still be ending its own
    runs, default_block_bytes = [], DataContext.get_current().target_max_block_size

    def keeping(*args, **kwargs):
        runs.append(executor(*args, **kwargs))
        return runs[-1]

    with ray_batch_engine("local", {"device": "cpu"}) as (engine, executor):
        ready = {process.pid for process in matte_actor_processes()}
        assert len(ready) == engine.plan.actors == 1
        for run in ("one", "two"):
            summary = run_batch([photos], tmp_path / run, pipeline=engine, executor=keeping, recursive=True)
            assert (summary.done, summary.failed) == (4, 1)
            assert {process.pid for process in matte_actor_processes()} == ready
            # its dataset made with blocks of a byte (each group a task yields, a block); the process's own default
            # left as it was
            assert runs[-1].dataset.context.target_max_block_size == 1 != default_block_bytes
            # where the first image out waited: each stage's end, in the order the image went through them
            ended = runs[-1].first_ended
            order = ["read", "decode", "sent", "arrived", "upload", "infer", "render", "encode", "write", "driver"]
            assert list(ended) == order or list(ended) == ["read", "driver"], ended   # or a failed file first
            assert all(0 <= a <= b for a, b in zip(ended.values(), list(ended.values())[1:]))
    assert no_matte_actor_within(30)   # killed with the engine, though this Ray goes on


def test_a_cancel_stops_the_run_and_a_rerun_finishes_it(private_ray, photos, tmp_path):
    from matting.batch import run_batch
    from matting.ray_batch import ray_batch_engine

    cancel = threading.Event()
    with ray_batch_engine("local", {}) as (engine, executor):
        first = run_batch([photos], tmp_path / "out", pipeline=engine, executor=executor, recursive=True,
                          cancel=cancel, on_result=lambda *_: cancel.set())
        assert first.cancelled and len(first.results) < first.total == 5
        second = run_batch([photos], tmp_path / "out", pipeline=engine, executor=executor, recursive=True)
    assert not second.cancelled and second.done + second.skipped == 4 and second.failed == 1


def test_the_ray_flag_takes_an_address_or_leaves_an_input_to_the_inputs():
    args = cli.build_parser().parse_intermixed_args(["a.jpg", "-o", "out", "--ray", "photos/"])
    cli._take_input_after_ray(args)
    assert (args.inputs, args.ray) == (["a.jpg", "photos/"], "local")
    for address in ("auto", "10.0.0.5:6379", "ray://head:10001", "local"):
        args = cli.build_parser().parse_intermixed_args(["a.jpg", "-o", "out", "--ray", address])
        cli._take_input_after_ray(args)
        assert (args.inputs, args.ray) == (["a.jpg"], address)
    args = cli.build_parser().parse_intermixed_args(["a.jpg", "-o", "out"])
    cli._take_input_after_ray(args)
    assert args.ray is None


def test_a_weights_file_that_cannot_load_fails_before_any_image_as_it_does_locally(private_ray, tmp_path):
    from matting.errors import MattingError
    from matting.pipeline import Pipeline
    from matting.ray_batch import ray_batch_engine

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(MattingError) as local:
        Pipeline(weights=broken, device="cpu", warm_up=False)
    with pytest.raises(MattingError) as on_ray:
        with ray_batch_engine("local", {"device": "cpu", "weights": str(broken)}):
            pytest.fail("the engine started with a broken weights file")
    assert str(on_ray.value) == str(local.value) and type(on_ray.value) is type(local.value)


class _Cluster:
    """What ClusterPlan reads of a Ray: its resources."""

    def __init__(self, cpus: int, gpus: int = 0):
        self.resources = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}

    def cluster_resources(self) -> dict:
        return self.resources


def test_the_actors_take_their_cpus_and_the_tasks_the_rest():
    from matting.errors import MattingError
    from matting.ray_batch import ClusterPlan, actors_per_gpu
    from matting.ray_stages import actor_threads

    h200 = ClusterPlan.of(_Cluster(16, 1), None)
    assert (h200.device, h200.actors, h200.gpus_per_actor) == ("cuda", actors_per_gpu(), 1 / actors_per_gpu())
    assert h200.task_cpus == h200.tasks(None) == 16 - actors_per_gpu()   # a task per CPU the actors leave
    assert h200.tasks(3) == 3   # --workers: that many
    laptop = ClusterPlan.of(_Cluster(2), None)   # one CPU actor with one core; one task
    assert (laptop.device, laptop.actors, laptop.cpus_per_actor, laptop.tasks(None)) == ("cpu", 1, 1, 1)
    for plan in (h200, laptop):   # whole CPUs to every actor, all of the cluster's taken at once
        assert plan.actor_resources["num_cpus"] == plan.cpus_per_actor
        assert plan.actors * plan.cpus_per_actor + plan.tasks(None) == plan.cpus
    # an actor's network has a thread per CPU it was given, at least one
    big = ClusterPlan.of(_Cluster(16), "cpu")
    assert [actor_threads(p.actor_resources["num_cpus"]) for p in (big, h200, laptop)] == [big.cpus_per_actor, 1, 1]
    assert big.cpus_per_actor == 8 and actor_threads(None) == actor_threads(0.3) == 1
    with pytest.raises(MattingError, match="the Ray cluster has no GPU"):
        ClusterPlan.of(_Cluster(8), "cuda")
