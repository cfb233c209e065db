"""Read convolution weights out of an ONNX file without the ``onnx`` package.

rembg distributes the U^2-Net family as ONNX graphs with BatchNorm folded into the convolutions. To let users
point the app at such files (and to rebuild the embedded weights) we only need the graph's Conv nodes in order
and their weight/bias initializers, which a small protobuf wire-format reader gets in a few milliseconds.
Only the subset of the ONNX schema used here is decoded; see onnx/onnx.proto for the field numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelLoadError

# Field numbers from onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 3, 4, 5
_ATTR_NAME, _ATTR_I, _ATTR_INTS = 1, 3, 8
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_FLOAT_DATA, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 4, 8, 9
_TENSOR_DATA_LOCATION = 14
_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


@dataclass
class ConvNode:
    name: str
    inputs: list[str]
    attributes: dict[str, object] = field(default_factory=dict)


@dataclass
class OnnxWeights:
    convs: list[ConvNode]            # in graph order (topological, i.e. execution order)
    tensors: dict[str, np.ndarray]   # initializers by name


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) for one message; length-delimited values stay memoryviews."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _ints(wire: int, value) -> list[int]:
    """A repeated int64 field, packed (wire 2) or not (wire 0); negative values are two's complement."""
    if wire == 0:
        raw = [value]
    else:
        raw, pos = [], 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            raw.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _parse_tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    name, dims, dtype, raw, floats = "", [], 1, None, []
    for number, wire, value in _fields(buf):
        if number == _TENSOR_DIMS:
            dims.extend(_ints(wire, value))
        elif number == _TENSOR_DATA_TYPE:
            dtype = value
        elif number == _TENSOR_NAME:
            name = bytes(value).decode("utf-8")
        elif number == _TENSOR_RAW_DATA:
            raw = value
        elif number == _TENSOR_FLOAT_DATA:
            floats.append(np.frombuffer(value, "<f4") if wire == 2 else np.frombuffer(value, "<f4"))
        elif number == _TENSOR_DATA_LOCATION and value == 1:
            raise ValueError(f"tensor {name!r} is stored in an external data file, which is not supported")
    if dtype not in _DTYPES:
        return name, np.zeros(0, np.float32)  # not a weight (e.g. int64 shape constants): skip
    if raw is not None:
        array = np.frombuffer(raw, np.dtype(_DTYPES[dtype]).newbyteorder("<")).copy()
    else:
        array = np.concatenate(floats) if floats else np.zeros(0, np.float32)
    return name, array.astype(np.float32).reshape(dims)


def _parse_node(buf: memoryview) -> tuple[str, ConvNode]:
    op_type, name, inputs, attributes = "", "", [], {}
    for number, wire, value in _fields(buf):
        if number == _NODE_OP_TYPE:
            op_type = bytes(value).decode()
        elif number == _NODE_NAME:
            name = bytes(value).decode()
        elif number == _NODE_INPUT:
            inputs.append(bytes(value).decode())
        elif number == _NODE_ATTRIBUTE:
            attr_name, attr_value = "", None
            for a_number, a_wire, a_value in _fields(value):
                if a_number == _ATTR_NAME:
                    attr_name = bytes(a_value).decode()
                elif a_number == _ATTR_I:
                    attr_value = _ints(a_wire, a_value)[0]
                elif a_number == _ATTR_INTS:
                    attr_value = (attr_value or []) + _ints(a_wire, a_value)
            attributes[attr_name] = attr_value
    return op_type, ConvNode(name, inputs, attributes)


def read_onnx_weights(data: bytes) -> OnnxWeights:
    """Parse an ONNX model's Conv nodes (in graph order) and float initializers."""
    try:
        buf = memoryview(data)
        graph = None
        for number, wire, value in _fields(buf):
            if number == _MODEL_GRAPH and wire == 2:
                graph = value
        if graph is None:
            raise ValueError("no graph in the file")
        convs, tensors = [], {}
        for number, wire, value in _fields(graph):
            if number == _GRAPH_NODE:
                op_type, node = _parse_node(value)
                if op_type == "Conv":
                    convs.append(node)
            elif number == _GRAPH_INITIALIZER:
                name, array = _parse_tensor(value)
                if array.size:
                    tensors[name] = array
    except (ValueError, IndexError) as exc:
        raise ModelLoadError(f"not a readable ONNX model ({exc})") from exc
    if not convs:
        raise ModelLoadError("the ONNX file has no convolution layers: is it a U^2-Net-family model?")
    return OnnxWeights(convs, tensors)
