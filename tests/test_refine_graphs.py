"""matting/refine_graphs.py: the refinement's coefficients from captured CUDA graphs. On any machine: the guided
filter uses what its ``coefficients`` hook gives and falls back when it gives nothing, and nothing is captured
off CUDA. On a CUDA GPU: stacks of every size render exactly as without graphs, also from two threads at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from matting import ops
from matting.ops.guided import guided_coefficients
from matting.refine_graphs import RefineGraphs
from matting.settings import EdgeSettings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def low_and_high(batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    guide_hr = torch.rand(batch, 3, 64, 80, generator=gen)
    guide_lr = ops.resize(guide_hr, (32, 40), antialias=True).clamp(0, 1)
    return guide_lr, torch.rand(batch, 1, 32, 40, generator=gen), guide_hr


def test_the_hook_gives_the_coefficients_and_none_falls_back():
    guide_lr, src, guide_hr = low_and_high()
    eager = ops.fast_guided_filter(guide_lr, src, guide_hr, 4, 1e-3)
    calls = []

    def declined(g, p, r, eps):
        calls.append((tuple(g.shape), r, eps))
        return None

    assert torch.equal(ops.fast_guided_filter(guide_lr, src, guide_hr, 4, 1e-3, declined), eager)
    assert calls == [((2, 3, 32, 40), 4, 1e-3)]

    def shifted(g, p, r, eps):   # the hook's answer is what the filter applies
        mean_a, mean_b = guided_coefficients(g, p, r, eps)
        return mean_a, mean_b + 0.25

    moved = ops.fast_guided_filter(guide_lr, src, guide_hr, 4, 1e-3, shifted)
    assert (moved - eager).mean() > 0.1


def test_nothing_is_captured_off_cuda():
    assert RefineGraphs.capture(torch.device("cpu"), (32, 40), 4, 1e-3) is None


def test_a_cpu_pipeline_renders_without_graphs():
    from matting.pipeline import Pipeline

    pipe = Pipeline(device="cpu", warm_up=False)
    pipe.warm_refine_graphs(EdgeSettings())
    assert pipe.refine_graphs is None


# ------------------------------------------------------------------ CUDA only
def _results(pipe, count: int):
    from matting.decode import DecodedImage

    rng = np.random.default_rng(1)
    photos = []
    for i in range(count):   # one size: render_many stacks them
        yy, xx = np.mgrid[0:480, 0:640]
        disc = (np.hypot(yy - 240 - 10 * i, xx - 320) < 150)[..., None]
        photos.append(np.where(disc, rng.integers(150, 255, (480, 640, 3)),
                               rng.integers(0, 90, (480, 640, 3))).astype(np.uint8))
    results = [pipe.prepare(DecodedImage(rgb=p, alpha=None, format="array"), use_cache=False) for p in photos]
    pipe.infer(results)
    return results


@cuda
def test_graphs_render_stacks_of_every_size_as_the_eager_path():
    from matting.pipeline import Pipeline

    pipe = Pipeline(device="cuda")
    settings = EdgeSettings()
    results = _results(pipe, 11)
    pipe.refine_graphs = None   # the ones captured at load: the reference is the eager path
    eager = pipe.render_many(results, settings)
    pipe.warm_refine_graphs(settings)
    assert pipe.refine_graphs is not None
    for count in (1, 3, 8, 11):   # 3 runs in the graph of 4; 11 is stacks of 8 and 3
        replays = pipe.refine_graphs.replays
        graphed = pipe.render_many(results[:count], settings)
        assert pipe.refine_graphs.replays == replays + (2 if count == 11 else 1)   # the graphs, not the eager path
        for a, b in zip(eager, graphed):
            assert np.abs(a.alpha.astype(int) - b.alpha.astype(int)).max() <= 1
            assert np.abs(a.rgba.astype(int) - b.rgba.astype(int)).max() <= 1


@cuda
def test_other_settings_fall_back_and_the_switch_turns_graphs_off(monkeypatch):
    from matting.pipeline import REFINE_GRAPHS_ENV, Pipeline

    pipe = Pipeline(device="cuda")
    pipe.warm_refine_graphs(EdgeSettings())
    results = _results(pipe, 2)
    other = EdgeSettings(refine_radius=EdgeSettings().refine_radius + 3)
    guide = torch.cat([r.guide for r in results]).float()
    matte = torch.cat([r.matte for r in results]).float()
    assert pipe.refine_graphs(guide, matte, other.refine_radius, other.refine_eps) is None
    expected = [pipe.render(r, other).alpha for r in results]
    for out, want in zip(pipe.render_many(results, other), expected):
        assert np.abs(out.alpha.astype(int) - want.astype(int)).max() <= 1
    monkeypatch.setenv(REFINE_GRAPHS_ENV, "0")
    pipe.warm_refine_graphs(EdgeSettings())
    assert pipe.refine_graphs is None


@cuda
def test_two_threads_on_their_own_streams_replay_in_turn():
    from matting.pipeline import Pipeline

    pipe = Pipeline(device="cuda")
    settings = EdgeSettings()
    results = _results(pipe, 8)
    pipe.refine_graphs = None   # the reference is the eager path
    expected = [r.alpha for r in pipe.render_many(results, settings)]
    pipe.warm_refine_graphs(settings)
    wrong: list[int] = []

    def render_often(part: list[int]):
        with torch.cuda.stream(torch.cuda.Stream()):
            for _ in range(20):
                outs = pipe.render_many([results[i] for i in part], settings)
                wrong.extend(i for i, out in zip(part, outs)
                             if np.abs(out.alpha.astype(int) - expected[i].astype(int)).max() > 1)

    threads = [threading.Thread(target=render_often, args=(part,)) for part in ([0, 1, 2], [3, 4, 5, 6, 7])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not wrong and pipe.refine_graphs.replays == 40


@cuda
def test_a_cuda_pipeline_holds_the_default_graphs_and_its_previews_use_them_exactly():
    """The app's Pipeline captures the default edges' graphs at load; a preview render and the page's soft matte
    from them equal the eager path's."""
    from matting.pipeline import Pipeline

    pipe = Pipeline(device="cuda")
    assert pipe.refine_graphs is not None
    settings = EdgeSettings()
    graphed_results, eager_results = _results(pipe, 2), _results(pipe, 2)   # soft mattes are kept per result
    graphed = [(pipe.render(r, settings, preview=True).alpha, pipe.soft_alpha(r, settings)[0])
               for r in graphed_results]
    assert pipe.refine_graphs.replays == 2   # one per photo: the soft matte is kept for the page's call
    pipe.refine_graphs = None
    eager = [(pipe.render(r, settings, preview=True).alpha, pipe.soft_alpha(r, settings)[0]) for r in eager_results]
    for (alpha, soft), (alpha_e, soft_e) in zip(graphed, eager):
        assert np.abs(alpha.astype(int) - alpha_e.astype(int)).max() <= 1
        assert np.abs(soft.astype(int) - soft_e.astype(int)).max() <= 1
