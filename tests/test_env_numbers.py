"""The engine's tuning knobs read from the environment: a value that is no number in range is one line naming the
variable, raised where the knob is used (not a traceback when a module is imported), and unset means the default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import matting.batch_runtime as rt
from matting.env_numbers import decimal_number, whole_number
from matting.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[1]


def test_whole_numbers(monkeypatch):
    monkeypatch.delenv("MATTING_TEST_KNOB", raising=False)
    assert whole_number("MATTING_TEST_KNOB", 7) == 7
    for text, value in (("", 7), (" 3 ", 3), ("0", 0)):
        monkeypatch.setenv("MATTING_TEST_KNOB", text)
        assert whole_number("MATTING_TEST_KNOB", 7) == value
    for text in ("two", "1.5", "-1", "1e3"):
        monkeypatch.setenv("MATTING_TEST_KNOB", text)
        with pytest.raises(InvalidParameterError, match=f"^MATTING_TEST_KNOB must be a whole number of at least 0, "
                                                        f"got '{text}'$"):
            whole_number("MATTING_TEST_KNOB", 7)
    monkeypatch.setenv("MATTING_TEST_KNOB", "0")
    with pytest.raises(InvalidParameterError, match="at least 1"):
        whole_number("MATTING_TEST_KNOB", 7, minimum=1)


def test_decimal_numbers(monkeypatch):
    monkeypatch.setenv("MATTING_TEST_KNOB", "0.001")
    assert decimal_number("MATTING_TEST_KNOB", 0.5) == 0.001
    for text in ("abc", "nan", "inf", "-0.1"):
        monkeypatch.setenv("MATTING_TEST_KNOB", text)
        with pytest.raises(InvalidParameterError, match=f"^MATTING_TEST_KNOB must be a number of at least 0, "
                                                        f"got '{text}'$"):
            decimal_number("MATTING_TEST_KNOB", 0.5)


def test_a_bad_gpu_knob_is_refused_where_a_gpu_batch_reads_it(monkeypatch):
    monkeypatch.setenv(rt.GPU_INFER_THREADS_ENV, "0")
    with pytest.raises(InvalidParameterError, match="MATTING_GPU_INFER_THREADS must be a whole number of at least 1"):
        rt.inference_threads(_Cuda())
    monkeypatch.setenv(rt.GIL_SWITCH_ENV, "fast")
    with pytest.raises(InvalidParameterError, match="MATTING_GIL_SWITCH_S"):
        with rt.gil_switch(_Cuda()):
            pass
    with rt.gil_switch(_Cpu()):   # a CPU batch does not read it
        pass


def test_importing_the_engine_with_a_bad_knob_does_not_fail():
    """Before, MATTING_GIL_SWITCH_S=abc broke `python app.py` and every command with a traceback at import."""
    env = {"MATTING_GIL_SWITCH_S": "abc", "MATTING_RAY_ACTORS_PER_GPU": "x", "MATTING_RAY_ACTOR_CALLS": "y",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", "import matting.batch_runtime, matting.ray_batch"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


class _Cuda:
    type = "cuda"


class _Cpu:
    type = "cpu"
