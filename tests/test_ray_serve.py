"""The app with `--ray --replicas 2` (matting/ray_serve.py): one Gradio front, the network and full-resolution
renders on two Ray Serve replicas of a private loopback Ray. /matte and a slider release answer as the local app
does; a replica's failure is a clear error and the front keeps serving."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.app_server import EXAMPLES, RunningApp, client, data_url_image, exact_render, free_port, read_image
from tests.test_app_api import UI_DEFAULTS, ui_args

ray = pytest.importorskip("ray", reason="requirements-ray.txt is not installed")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served_app():
    from demo import build_demo, launch_options
    from demo.files import OutputStore
    from matting.ray_runtime import ray_session
    from matting.ray_serve import served_pipeline

    with ray_session("local", num_cpus=2), served_pipeline("local", 2, {"device": "cpu"}) as pipe:
        store = OutputStore()
        demo = build_demo(pipe, lang="auto", store=store)
        port = free_port()
        demo.launch(**launch_options(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                     quiet=True))
        try:
            yield RunningApp(demo=demo, url=f"http://127.0.0.1:{port}/", pipe=pipe, store=store)
        finally:
            demo.close()
            store.close()
    assert pipe.handle is None and pipe.runner.handle is None   # let go of before Ray ended (ray_runtime)


def test_the_front_reports_the_replicas_engine(served_app):
    info = served_app.pipe.info()
    assert info["replicas"] == "2" and info["model"] == "u2netp"
    assert "on 2 Ray Serve replicas" in served_app.pipe.summary()


def test_matte_through_the_replicas_equals_a_local_pipelines(served_app, pipe):
    """Full resolution, rendered on a replica; the same alpha as this process's own CPU pipeline (within a level:
    the same int8 network on the same CPU)."""
    from gradio_client import handle_file

    source = EXAMPLES / "astronaut.png"
    before = served_app.network_calls
    cutout, alpha_file, report = client(served_app).predict(handle_file(str(source)), api_name="/matte")
    assert served_app.network_calls == before + 1
    alpha = np.asarray(read_image(alpha_file)).astype(int)
    assert alpha.shape == (512, 512) and np.asarray(read_image(cutout)).shape == (512, 512, 4)
    local = pipe.process(str(source))[1].alpha.astype(int)
    assert np.abs(alpha - local).max() <= 1


def test_a_slider_release_rerenders_without_the_network(served_app):
    from gradio_client import handle_file

    session = client(served_app)
    value = session.predict(handle_file(str(EXAMPLES / "chelsea.png")), *ui_args(), api_name="/upload")
    after_upload = served_app.network_calls
    alphas = []
    for feather in (0.0, 8.0):
        reply = exact_render(served_app, value["id"], **{**UI_DEFAULTS, "feather": feather},
                             soft_key=value["soft_key"])
        alphas.append(np.asarray(data_url_image(reply["exact"]["alpha"])))
    assert served_app.network_calls == after_upload
    assert not np.array_equal(alphas[0], alphas[1])


def replica_processes() -> list:
    return [p for p in psutil.process_iter(["cmdline"])
            if "ServeReplica:matting" in " ".join(p.info["cmdline"] or ())]


def test_an_engine_error_on_a_replica_is_the_error_a_local_render_raises(served_app, pipe):
    from matting.errors import InvalidParameterError

    bad_background = np.zeros((8, 8, 5), np.uint8)   # passes the front; the render on the replica refuses it
    result = served_app.pipe.matte(str(EXAMPLES / "coffee.png"))
    with pytest.raises(InvalidParameterError) as remote:
        served_app.pipe.render(result, background=bad_background)
    with pytest.raises(InvalidParameterError) as local:
        pipe.render(pipe.matte(str(EXAMPLES / "coffee.png")), background=bad_background)
    assert str(remote.value) == str(local.value)
    assert served_app.pipe.render(result).alpha.shape == (400, 600)   # and the replicas still serve


def test_replicas_killed_are_replaced_and_the_front_keeps_serving(served_app):
    """Serve replaces killed replicas; meanwhile a request either waits for one or gets the clear message."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    replicas = replica_processes()
    assert len(replicas) == 2
    for process in replicas:
        process.kill()
    outcomes = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client(served_app).predict(handle_file(str(EXAMPLES / "coffee.png")), api_name="/matte")
            outcomes.append("ok")
            break
        except AppError as exc:
            outcomes.append(str(exc))
            time.sleep(1.0)
    assert outcomes[-1] == "ok", outcomes[-3:]
    assert all("model replica" in text for text in outcomes[:-1]), outcomes[:3]
