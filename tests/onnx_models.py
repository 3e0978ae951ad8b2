"""Small ONNX image models built with `onnx.helper`, for the tests of `harvest index` and of
`harvest similar --embedder` (no model weights can be downloaded here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from harvester.dataset.embed import Layout

Dim = int | str  # a fixed axis, or a named dynamic one


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    weights: dict[str, npt.NDArray[np.float32]],
) -> onnx.ModelProto:
    init = [numpy_helper.from_array(w, name) for name, w in weights.items()]
    graph = helper.make_graph(nodes, "test-embedder", inputs, outputs, init)
    # IR 9 / opset 17: loadable by every onnxruntime the extra allows (>= 1.17).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def conv_model(
    path: Path,
    *,
    seed: int = 0,
    channels: int = 32,
    size: Dim = 64,
    batch: Dim = "N",
    layout: Layout = Layout.NCHW,
    pooled: bool = True,
    flatten: bool = True,
    metadata: dict[str, str] | None = None,
) -> Path:
    """A seeded Conv(3×3) → ReLU → GlobalAveragePool → Flatten image model saved at `path`."""
    rng = np.random.default_rng(seed)
    weights = {
        "w": (rng.standard_normal((channels, 3, 3, 3)) * 0.5).astype(np.float32),
        "b": (rng.standard_normal(channels) * 0.1).astype(np.float32),
    }
    height, width = (size, size) if isinstance(size, int) else ("H", "W")
    shape = [batch, 3, height, width] if layout is Layout.NCHW else [batch, height, width, 3]
    nodes = []
    first = "pixels"
    if layout is Layout.NHWC:
        nodes.append(helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]))
        first = "nchw"
    nodes += [
        helper.make_node("Conv", [first, "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"] if pooled else ["embedding"]),
    ]
    out_shape: list[Dim] = [batch, channels, height, width]
    if pooled:
        nodes.append(helper.make_node("GlobalAveragePool", ["relu"], ["pool"]))
        out_shape = [batch, channels, 1, 1]
        if flatten:
            nodes.append(helper.make_node("Flatten", ["pool"], ["embedding"]))
            out_shape = [batch, channels]
        else:
            nodes.append(helper.make_node("Identity", ["pool"], ["embedding"]))
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)
    model = graph_model(nodes, [x], [y], weights)
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path
