"""matting/batch_runtime.py: the batch's defaults per device and the process-wide settings it holds while it runs
(no GPU needed: the GPU choices are decided from the device object)."""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from matting import batch_runtime as rt

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


def test_inference_threads_one_on_a_gpu_one_per_core_on_a_cpu(monkeypatch):
    monkeypatch.setattr(rt, "cpu_cores", lambda: 6)
    assert rt.inference_threads(CUDA) == 1 and rt.inference_threads(CPU) == 6
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 3)
    assert rt.inference_threads(CPU) == 3
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 10)
    assert rt.inference_threads(CPU) == 6
    assert rt.cpu_cores() >= 1


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
        assert sys.getswitchinterval() == pytest.approx(rt.GPU_SWITCH_INTERVAL)
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


@pytest.mark.parametrize("batch, captured", [(16, [1, 2, 4, 8, 16]), (5, [1, 2, 4, 8]), (1, [1]), (32, [1, 2, 4, 8, 16, 32])])
def test_graphs_are_captured_up_to_the_batch_size(monkeypatch, batch, captured):
    """The CUDA graph of every batch size a run can use is captured up front (the next power of two covers a
    partial batch), never one more."""
    sizes = []

    class Runner:
        use_cuda_graphs = True
        input_hw = (4, 4)
        device, dtype = CPU, torch.float32

        def __call__(self, x):
            sizes.append(x.shape[0])

    class Pipe:
        runner = Runner()

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    rt.warm_graphs(Pipe(), batch)
    assert sizes == captured
    sizes.clear()
    Pipe.runner.use_cuda_graphs = False
    rt.warm_graphs(Pipe(), batch)
    assert sizes == []


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
