"""Architectures, weight formats and the registry."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from matting.errors import InvalidParameterError, ModelLoadError
from matting.models import U2NET, U2NETP, available_models, create_model, fuse_batchnorm, load_weights
from matting.models.weights import conv_execution_order, save_folded_safetensors, state_from_onnx


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics, so folding has something real to fold."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model.eval()


def test_parameter_counts_match_the_paper():
    assert sum(p.numel() for p in U2NETP().parameters()) == 1_131_181
    assert sum(p.numel() for p in U2NET().parameters()) == 44_009_869


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (1, 1)])
def test_output_has_input_size(size):
    model = randomize(U2NETP())
    with torch.inference_mode():
        assert model(torch.rand(2, 3, *size)).shape == (2, 1, *size)


def test_authors_module_names():
    keys = list(U2NETP().state_dict())
    assert keys[:3] == ["stage1.rebnconvin.conv_s1.weight", "stage1.rebnconvin.conv_s1.bias",
                        "stage1.rebnconvin.bn_s1.weight"]
    assert "stage1d.rebnconv1d.bn_s1.running_var" in keys and "stage5.rebnconv4.conv_s1.weight" in keys
    assert keys[-2:] == ["outconv.weight", "outconv.bias"]


def test_modules_are_registered_in_execution_order():
    model = U2NETP().eval()
    registered = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert conv_execution_order(model) == registered


def test_fusing_batchnorm_keeps_the_function():
    model = randomize(U2NETP())
    x = torch.rand(1, 3, 64, 80)
    with torch.inference_mode():
        before = model(x)
        after = fuse_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_official_pth_layout_loads_strictly(tmp_path):
    source = randomize(U2NETP(), seed=1)
    path = tmp_path / "u2netp.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # as saved from DataParallel
    loaded = load_weights(U2NETP(), path)
    x = torch.rand(1, 3, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval()(x), source(x), atol=1e-4, rtol=1e-4)


def test_folded_safetensors_round_trip_is_exact_and_reproducible(tmp_path):
    model = fuse_batchnorm(randomize(U2NETP(), seed=2))
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_folded_safetensors(model, first, {"model": "u2netp"})
    save_folded_safetensors(model, second, {"model": "u2netp"})
    assert first.read_bytes() == second.read_bytes()
    loaded = load_weights(U2NETP(), first).eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_folded_onnx_graph_maps_by_execution_order():
    pytest.importorskip("onnx")  # only to write the test graph; reading needs no onnx package
    model = fuse_batchnorm(randomize(U2NETP(), seed=3))
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), buffer, dynamo=False, opset_version=11)
    target = fuse_batchnorm(U2NETP().eval())
    target.load_state_dict(state_from_onnx(target, buffer.getvalue()), strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(target(x), model(x))


def test_embedded_default_loads():
    model = create_model("u2netp")
    assert not model.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("content,suffix", [(b"", ".safetensors"), (b"\x00garbage" * 50, ".safetensors"),
                                            (b"not a pickle", ".pth"), (b"\x08\x07garbage", ".onnx"),
                                            (b"abc", ".h5")])
def test_corrupt_or_unknown_weights_give_a_clear_error(tmp_path, content, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        create_model("u2netp", weights=path)
    message = str(info.value)
    assert "\n" not in message, message          # one line, whatever the library said
    assert path.name in message, message          # and it names the file


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        create_model("u2netp", weights=tmp_path / "nope.safetensors")


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "small.safetensors"
    save_folded_safetensors(fuse_batchnorm(U2NETP().eval()), path, {})
    with pytest.raises(ModelLoadError, match="does not match"):
        load_weights(U2NET(), path)


def test_registry():
    assert {"u2netp", "u2net", "u2net_human_seg"} <= set(available_models())
    with pytest.raises(InvalidParameterError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ModelLoadError, match="no embedded weights"):
        create_model("u2net")
    assert create_model("u2net", weights=False).outconv.in_channels == 6
