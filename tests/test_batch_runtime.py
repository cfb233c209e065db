"""matting/batch_runtime.py: the batch's defaults per device and the process-wide settings it holds while it runs
(no GPU needed: the GPU choices are decided from the device object)."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace

import pytest
import torch

from matting import batch_runtime as rt
from matting.settings import EdgeSettings

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_the_device_decides_gpu_or_cpu():
    assert rt.is_gpu(CUDA) and rt.is_gpu(torch.device("cuda", 1)) and rt.is_gpu("cuda")
    assert not rt.is_gpu(CPU) and not rt.is_gpu("cpu")
    assert (rt.default_batch_size(CUDA), rt.default_batch_size(CPU)) == (16, 1)


@pytest.mark.parametrize("cores, processes, gpu, cpu", [
    (16, True, 4, 16), (16, False, 16, 16), (2, True, 2, 2), (64, False, 16, 32), (1, True, 2, 2),
])
def test_workers_follow_the_cores_and_the_encoder(monkeypatch, cores, processes, gpu, cpu):
    """GPU: 4 workers when the encoder has helper processes (more only fight for the GIL), 16 when OpenCV encodes
    in the threads; CPU: one per core up to 32; never fewer than 2."""
    monkeypatch.setattr(rt, "cpu_cores", lambda: cores)
    monkeypatch.setattr(rt, "uses_processes", lambda device: processes)
    assert (rt.default_workers(CUDA), rt.default_workers(CPU)) == (gpu, cpu)


@pytest.mark.parametrize("cores, engines, processes, workers", [
    (16, 4, True, 4), (16, 3, True, 4), (12, 2, True, 4), (16, 8, True, 2), (16, 4, False, 4), (64, 4, False, 16),
    (6, 4, True, 2),
])
def test_engines_sharing_a_gpu_host_share_its_cores(monkeypatch, cores, engines, processes, workers):
    """Each engine takes at most its share of the cores for its decoders and encoders, never more than one engine
    would take, never fewer than 2. The CPU's count does not depend on engines."""
    monkeypatch.setattr(rt, "cpu_cores", lambda: cores)
    monkeypatch.setattr(rt, "uses_processes", lambda device: processes)
    assert rt.default_workers(CUDA, engines) == workers
    assert rt.default_workers(CPU, engines) == rt.default_workers(CPU)


def test_inference_threads_one_on_a_gpu_one_per_core_on_a_cpu(monkeypatch):
    monkeypatch.setattr(rt, "cpu_cores", lambda: 6)
    assert rt.inference_threads(CUDA) == 1 and rt.inference_threads(CPU) == 6
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 3)
    assert rt.inference_threads(CPU) == 3
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 10)
    assert rt.inference_threads(CPU) == 6
    assert rt.cpu_cores() >= 1


def test_more_inference_threads_on_a_gpu_only_when_asked_each_with_its_render_threads(monkeypatch):
    monkeypatch.delenv(rt.GPU_INFER_THREADS_ENV, raising=False)
    assert rt.render_threads(CUDA) == rt.GPU_RENDER_THREADS
    monkeypatch.setenv(rt.GPU_INFER_THREADS_ENV, "3")
    assert rt.inference_threads(CUDA) == 3 and rt.render_threads(CUDA) == 3 * rt.GPU_RENDER_THREADS
    monkeypatch.setattr(rt, "cpu_cores", lambda: 6)
    assert rt.inference_threads(CPU) == 6   # the CPU's count is its own


def test_a_shared_setting_is_restored_once_when_the_last_holder_ends():
    value = {"v": "original"}
    setting = rt.SharedSetting(lambda: value["v"], lambda v: value.__setitem__("v", v))
    with setting.held("batch"):
        assert value["v"] == "batch"
        with setting.held("batch"):
            assert value["v"] == "batch"
        assert value["v"] == "batch", "the outer batch still runs"
    assert value["v"] == "original"
    with setting.held("again"):
        assert value["v"] == "again"
    assert value["v"] == "original"


def test_a_gpu_batch_shortens_the_gil_switch_and_a_cpu_batch_takes_one_torch_thread():
    before_switch, before_threads = sys.getswitchinterval(), torch.get_num_threads()
    with rt.gil_switch(CUDA):
        assert sys.getswitchinterval() == pytest.approx(rt.gpu_switch_interval())
    with rt.gil_switch(CPU):
        assert sys.getswitchinterval() == before_switch
    assert sys.getswitchinterval() == before_switch
    with rt.torch_threads(CPU):
        assert torch.get_num_threads() == rt.CPU_TORCH_THREADS == 1
    with rt.torch_threads(CUDA):
        assert torch.get_num_threads() == before_threads
    assert torch.get_num_threads() == before_threads


def test_streams_are_the_cpus_no_op():
    with rt.own_stream(CPU):
        rt.enter_own_stream(CPU)
        rt.sync_own_stream(CPU)


def test_a_gpu_pool_thread_keeps_a_stream_of_its_own_and_syncs_only_that(monkeypatch):
    """On a GPU (a fake one: torch.cuda's calls recorded) the initializer makes and sets a stream for the device,
    and a sync waits on the device's current stream of this thread."""
    calls = []

    class Stream:
        def __init__(self, device):
            self.device = device

        def synchronize(self):
            calls.append(("synchronize", self.device))

    gpu = SimpleNamespace(type="cuda")
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: calls.append(("set_stream", stream.device)))
    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    rt.enter_own_stream(gpu)
    rt.sync_own_stream(gpu)
    assert calls == [("set_stream", gpu), ("synchronize", gpu)]
    calls.clear()
    rt.enter_own_stream(CPU)
    rt.sync_own_stream(CPU)
    assert calls == []


def test_cores_without_an_affinity_mask_are_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert rt.cpu_cores() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert rt.cpu_cores() == 2


def test_gpu_workers_follow_whether_the_encoder_of_that_device_uses_processes(monkeypatch):
    """Not a stand-in for uses_processes: fpng present, so a GPU run encodes in helpers and takes 4 workers."""
    from matting import encode
    from matting.batch_encode import PROCESSES_ENV

    monkeypatch.delenv(PROCESSES_ENV, raising=False)
    monkeypatch.setattr(rt, "cpu_cores", lambda: 16)
    monkeypatch.setattr(encode, "_fpng", encode._fpng or object())
    assert rt.default_workers(SimpleNamespace(type="cuda")) == 4
    monkeypatch.setattr(encode, "_fpng", None)
    assert rt.default_workers(SimpleNamespace(type="cuda")) == 16


def test_a_torch_threads_setting_sets_torchs_thread_count_and_restores_it():
    setting = rt._torch_threads_setting()
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    with setting.held(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before


class Runner:
    """A runner that captures CUDA graphs (no GPU here): records the sizes it is asked to capture, as
    ModelRunner.capture_graphs does (only those not held yet), and every call of the network itself."""
    use_cuda_graphs = True
    device = torch.device("meta")

    def __init__(self):
        self.captured, self.asked, self.calls = [], [], 0

    def capture_graphs(self, sizes):
        self.asked.append(list(sizes))
        new = [size for size in sizes if size not in self.captured]
        self.captured += new
        return new

    def __call__(self, x):
        self.calls += 1

    def sizes(self):
        return self.captured


@pytest.fixture
def synced(monkeypatch):
    """torch.cuda.synchronize recorded (the graphs are captured before it returns; no GPU here)."""
    devices = []
    monkeypatch.setattr(torch.cuda, "synchronize", devices.append)
    return devices


@pytest.mark.parametrize("batch, captured", [(16, [1, 2, 4, 8, 16]), (5, [1, 2, 4, 8]), (1, [1]),
                                            (32, [1, 2, 4, 8, 16, 32])])
def test_graphs_are_captured_up_to_the_batch_size(synced, batch, captured):
    """The CUDA graph of every batch size a run can use is captured up front (the next power of two covers a
    partial batch), never one more, and waited for; the network itself is not run."""
    pipe = SimpleNamespace(runner=Runner())
    rt.warm_graphs(pipe, batch)
    assert pipe.runner.sizes() == captured
    assert synced == [Runner.device] and pipe.runner.calls == 0


def test_a_later_run_captures_only_the_graphs_it_lacks_and_waits_for_nothing_else(synced):
    """Each run of a batch warms its engine's graphs: a run of the same size afterwards captures nothing and does
    not wait on the GPU (each of four engines replaying every graph delayed every run's first image on the H200);
    a larger batch captures the new sizes only."""
    pipe = SimpleNamespace(runner=Runner())
    rt.warm_graphs(pipe, 4)
    rt.warm_graphs(pipe, 4)
    assert pipe.runner.sizes() == [1, 2, 4] and synced == [Runner.device]
    rt.warm_graphs(pipe, 16)
    assert pipe.runner.sizes() == [1, 2, 4, 8, 16] and synced == [Runner.device] * 2
    assert pipe.runner.calls == 0


def test_model_runner_captures_each_graph_once(monkeypatch):
    """ModelRunner.capture_graphs: the sizes not held are captured (under the replay lock), held ones are not
    captured or replayed again; the sizes captured now come back."""
    from matting.models.registry import get_spec
    from matting.runner import ModelRunner

    spec = get_spec("u2netp")
    runner = ModelRunner(torch.nn.Conv2d(3, 1, 1), spec, CPU, torch.float32, use_cuda_graphs=False)
    captures = []

    def graph_for(size):
        assert runner._lock.locked() and torch.is_inference_mode_enabled()
        captures.append(size)
        runner._graphs[size] = ("graph", size)
        return runner._graphs[size]

    monkeypatch.setattr(runner, "_graph_for", graph_for)
    monkeypatch.setattr(runner, "model", lambda x: pytest.fail("the network ran"))
    assert runner.capture_graphs([1, 2, 4]) == [1, 2, 4]
    assert runner.capture_graphs([1, 2, 4, 8]) == [8]
    assert runner.capture_graphs([2, 8]) == [] and captures == [1, 2, 4, 8]


def test_no_graphs_without_a_runner_that_uses_them(synced):
    runner = Runner()
    runner.use_cuda_graphs = False
    refined = []
    for pipe in (SimpleNamespace(runner=runner, warm_refine_graphs=refined.append), SimpleNamespace(),
                 SimpleNamespace(runner=SimpleNamespace())):
        rt.warm_graphs(pipe, 16, EdgeSettings())
    assert runner.asked == [] and synced == [] and refined == []


def test_the_refinements_graphs_are_captured_for_the_runs_edges(synced):
    """With the network's graphs, those of the refinement for the run's settings (matting.refine_graphs)."""
    refined = []
    pipe = SimpleNamespace(runner=Runner(), warm_refine_graphs=refined.append)
    settings = EdgeSettings(refine_radius=7)
    rt.warm_graphs(pipe, 4, settings)
    rt.warm_graphs(pipe, 4)   # a caller with no settings: the network's only
    assert refined == [settings] and pipe.runner.asked == [[1, 2, 4], [1, 2, 4]]


def test_warming_up_a_gpu_pipeline_captures_its_graphs_and_renders_one_image_outside_the_cache(pipe, synced):
    """warm_up's GPU path on the CPU pipeline seen as a GPU one: its real prepare, infer and render run."""
    from matting.settings import EdgeSettings

    rendered = []

    class GpuLayout:
        device = SimpleNamespace(type="cuda")

        def __init__(self):
            self.runner = Runner()

        def __getattr__(self, name):
            return getattr(pipe, name)

        def render(self, result, settings=None):
            rendered.append((result, settings))
            return pipe.render(result, settings)

    cached = len(pipe.cache)
    settings = EdgeSettings(feather=2.0)
    gpu = GpuLayout()
    rt.warm_up(gpu, settings=settings)
    assert gpu.runner.sizes() == [1, 2, 4, 8, 16]      # the GPU's default batch size
    assert len(rendered) == 1 and rendered[0][0].matte is not None and rendered[0][1] is settings
    assert len(pipe.cache) == cached, "the warm-up image is not kept in the matte cache"
    gpu = GpuLayout()
    rt.warm_up(gpu, 2)
    assert gpu.runner.sizes() == [1, 2] and len(rendered) == 2
    cpu = GpuLayout()
    cpu.device = CPU
    rt.warm_up(cpu)
    assert cpu.runner.sizes() == [1] and len(rendered) == 2, "a CPU pipeline renders nothing ahead"


def test_settings_held_by_threads_at_once_end_as_they_were():
    value = {"v": 0}
    setting = rt.SharedSetting(lambda: value["v"], lambda v: value.__setitem__("v", v))
    start = threading.Barrier(4)

    def hold():
        start.wait()
        with setting.held(7):
            assert value["v"] == 7

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value["v"] == 0
