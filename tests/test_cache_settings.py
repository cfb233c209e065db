"""The byte-bounded LRU, edge settings validation, colours and the working-resolution policy."""

from __future__ import annotations

import threading

import pytest
import torch

from matting.cache import ByteLRU
from matting.errors import InvalidParameterError
from matting.resolution import plan_resize, resolve_max_side
from matting.settings import EdgeSettings, parse_color


def test_lru_evicts_least_recently_used_by_bytes():
    cache = ByteLRU(max_bytes=10, sizeof=len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"1234")          # 12 bytes > 10: b goes
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.nbytes == 8
    cache.put("huge", b"x" * 11)     # larger than the budget: never stored, nothing evicted
    assert "huge" not in cache and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get("b") is None and cache.misses == 1


def test_lru_replacing_a_key_updates_the_byte_count():
    cache = ByteLRU(max_bytes=100, sizeof=len)
    cache.put("a", b"x" * 50)
    cache.put("a", b"x" * 10)
    assert cache.nbytes == 10 and len(cache) == 1


def test_lru_is_thread_safe():
    cache = ByteLRU(max_bytes=1000, sizeof=len)

    def work(offset):
        for i in range(2000):
            cache.put((offset, i % 50), b"x" * 7)
            cache.get((offset, (i * 7) % 50))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == 7 * len(cache) <= 1000


def test_edge_settings_validate_ranges():
    EdgeSettings(threshold=0.5, erode=-3, feather=2.5)
    for bad in [dict(threshold=1.5), dict(threshold=-0.1), dict(feather=-1), dict(erode=1.5), dict(erode=500),
                dict(threshold="x"), dict(refine_radius=0)]:
        with pytest.raises(InvalidParameterError) as info:
            EdgeSettings(**bad)
        assert next(iter(bad)) in str(info.value)


def test_raw_settings_turn_everything_off():
    raw = EdgeSettings.raw()
    assert (raw.threshold, raw.erode, raw.feather, raw.refine, raw.use_input_alpha, raw.decontaminate) == \
        (0, 0, 0, False, False, False)


@pytest.mark.parametrize("name,low,high,step", [("threshold", 0.0, 1.0, 0.01), ("feather", 0.0, 100.0, 0.5),
                                                ("erode", -100, 100, 1), ("refine_radius", 1, 64, 1),
                                                ("refine_eps", 1e-8, 1.0, 0.5)])
def test_each_setting_takes_exactly_its_documented_range(name, low, high, step):
    """The limits are inclusive, the first value past either one is refused, and the message names the setting
    and its range (the UI shows it as it is)."""
    assert getattr(EdgeSettings(**{name: low}), name) == low
    assert getattr(EdgeSettings(**{name: high}), name) == high
    below = low - step if name != "refine_eps" else low / 2
    for bad in (below, high + step, "many"):
        with pytest.raises(InvalidParameterError, match=f"^{name} must be between {low} and {high}, got "):
            EdgeSettings(**{name: bad})


@pytest.mark.parametrize("text,rgb", [("#ff8000", (255, 128, 0)), ("#F80", (255, 136, 0)), ("0, 128,255", (0, 128, 255)),
                                      ("rgb(1,2,3)", (1, 2, 3)), ("rgba(10, 20, 30, 1)", (10, 20, 30)),
                                      ((1.4, 2, 3), (1, 2, 3)),
                                      # each channel from its own digits; seven characters without '#' are r,g,b
                                      ("#12345f", (0x12, 0x34, 0x5F)), ("10,20,3", (10, 20, 3))])
def test_parse_color(text, rgb):
    assert parse_color(text) == rgb


@pytest.mark.parametrize("bad", ["", "#12", "#gggggg", "1,2", "300,0,0", "256,0,0", "a,b,c", None, (1, 2)])
def test_parse_color_rejects(bad):
    with pytest.raises(InvalidParameterError, match="not a colour"):
        parse_color(bad)


def test_working_resolution_policy():
    assert plan_resize(3000, 2000, 4096).working == (3000, 2000)
    assert plan_resize(8000, 6000, 4096).working == (4096, 3072)
    assert plan_resize(1, 20000, 4096).working == (1, 4096)
    assert plan_resize(8192, 4097, 4096).working == (4096, 2049)   # 2048.5 rounds half up, as previews do
    plan = plan_resize(8000, 6000, 4096)
    assert plan.changed and "8000 x 6000" in plan.notice() and "4096 x 3072" in plan.notice()
    assert not plan_resize(100, 100, 4096).changed
    with pytest.raises(InvalidParameterError):
        resolve_max_side(10)


def test_max_side_from_environment(monkeypatch):
    monkeypatch.setenv("MATTING_MAX_SIDE", "2048")
    assert resolve_max_side() == 2048
    assert resolve_max_side(1000) == 1000


def test_precision_choice(monkeypatch):
    from matting.device import resolve_dtype
    from matting.cli import main

    cpu = torch.device("cpu")
    assert resolve_dtype(cpu) == torch.float32 and resolve_dtype(cpu, "fp32") == torch.float32
    monkeypatch.setenv("MATTING_PRECISION", "fp16")
    with pytest.raises(InvalidParameterError, match="CUDA"):
        resolve_dtype(cpu)
    with pytest.raises(InvalidParameterError, match="unknown precision"):
        resolve_dtype(cpu, "int4")
    assert main(["--precision", "fp16", "--device", "cpu", "-o", "unused", "x.jpg"]) == 2
    assert resolve_dtype(cpu, "bf16") == torch.bfloat16  # asked for: runs with or without AMX (test_precision.py)
