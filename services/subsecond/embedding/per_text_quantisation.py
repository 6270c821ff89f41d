"""Rewrites the int8 model so that a batch of texts quantises each text on its own.

The exported model quantises activations dynamically: each ``DynamicQuantizeLinear`` computes one
scale and zero point over its whole input tensor, so in a batch a text's vector depends on its
neighbours (by up to 0.03 per component for 32 texts of equal length, against each run alone). Here
each of those nodes is replaced by the same arithmetic reduced over every axis but the batch axis
(ONNX's definition of ``DynamicQuantizeLinear``, per text), and each ``MatMulInteger`` that read its
per-tensor zero point gets none; the zero point's share of the product, ``zero_point · Σₖ(W[k,n] -
W_zp[n])``, is subtracted afterwards in int32, which is exact. A text's quantised activations, and so
its vector, are then those of the text alone, whatever else is in the batch.

The reduction runs over the sequence axis too, as it does for one text alone, but only over the
positions the attention mask keeps: the activations are multiplied by the mask before their minimum
and maximum are taken, and the range always includes 0, so a padded position (a 0 there) never moves
them. A text padded in a batch of longer texts is then quantised as it is alone; its padded positions
are quantised with its scale (clipped where they fall outside) and go nowhere, since the attention
ignores them as keys and the pooling as outputs. With ONNX Runtime's MultiHeadAttention and the
padding after each text, a padded text's vector is its vector alone bit for bit (tests/embedding).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

QMAX = 255.0
MASK_INPUT = "attention_mask"


def per_text_quantisation(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose dynamic quantisation is per text (the batch axis); the rest unchanged."""
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    mask, nodes = _positions_mask()
    quantised: dict[str, str] = {}  # a per-tensor zero point's name -> the per-text one (int32)
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            built, zero_point = _quantise_per_text(node, mask)
            nodes.extend(built)
            quantised[node.output[2]] = zero_point
        elif node.op_type == "MatMulInteger" and node.input[2] in quantised:
            nodes.extend(_matmul_without_zero_point(node, initializers, quantised[node.input[2]], graph))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _names(prefix: str) -> Iterator[str]:
    count = 0
    while True:
        count += 1
        yield f"{prefix}/per_text_{count}"


def _positions_mask() -> tuple[str, list[onnx.NodeProto]]:
    """The attention mask as float, shaped ``(batch, sequence, 1)`` to multiply activations by."""
    mask_float, axis, mask = "per_text/mask_float", "per_text/mask_axis", "per_text/mask"
    return mask, [
        helper.make_node("Cast", [MASK_INPUT], [mask_float], to=onnx.TensorProto.FLOAT),
        helper.make_node("Constant", [], [axis], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("Unsqueeze", [mask_float, axis], [mask]),
    ]


def _quantise_per_text(node: onnx.NodeProto, mask: str) -> tuple[list[onnx.NodeProto], str]:
    """``DynamicQuantizeLinear`` with min and max per text, over its unmasked positions: the outputs
    keep their names (the scale and zero point now shaped ``(batch, 1, 1)``); also the zero point as
    int32, for the product's correction."""
    (x,) = node.input
    y, scale, zero_point = node.output
    name = _names(node.name)
    zero, qmax, axes, kept = next(name), next(name), next(name), next(name)
    low, high, low0, high0, span, row_scale, shift, unclipped, clipped = (next(name) for _ in range(9))
    row_zero_point_f, row_zero_point = next(name), next(name)
    zero_point_f, zero_point_i32 = next(name), f"{zero_point}_int32"
    return [
        helper.make_node("Constant", [], [zero], value=numpy_helper.from_array(np.array(0.0, np.float32))),
        helper.make_node("Constant", [], [qmax], value=numpy_helper.from_array(np.array(QMAX, np.float32))),
        helper.make_node("Constant", [], [axes], value=numpy_helper.from_array(np.array([1, 2], np.int64))),
        # Padded positions as 0, which the range includes anyway (below).
        helper.make_node("Mul", [x, mask], [kept]),
        # Every axis but the batch axis (ONNX 17's ReduceMin/ReduceMax take axes as an attribute).
        helper.make_node("ReduceMin", [kept], [low], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMax", [kept], [high], axes=[1, 2], keepdims=0),
        # The range always includes 0, so that 0 is exactly representable.
        helper.make_node("Min", [low, zero], [low0]),
        helper.make_node("Max", [high, zero], [high0]),
        helper.make_node("Sub", [high0, low0], [span]),
        helper.make_node("Div", [span, qmax], [row_scale]),
        # zero_point = round(clip(0 - low / scale, 0, 255)), rounding half to even as ONNX's Round does.
        helper.make_node("Div", [low0, row_scale], [shift]),
        helper.make_node("Sub", [zero, shift], [unclipped]),
        helper.make_node("Clip", [unclipped, zero, qmax], [clipped]),
        helper.make_node("Round", [clipped], [row_zero_point_f]),
        helper.make_node("Cast", [row_zero_point_f], [row_zero_point], to=onnx.TensorProto.UINT8),
        # y = clip(round(x / scale) + zero_point, 0, 255), one scale and zero point per text (axis 0).
        helper.make_node("QuantizeLinear", [x, row_scale, row_zero_point], [y], axis=0),
        # Shaped (batch, 1, 1) for the products' scales and the zero point's correction.
        helper.make_node("Unsqueeze", [row_scale, axes], [scale]),
        helper.make_node("Unsqueeze", [row_zero_point_f, axes], [zero_point_f]),
        helper.make_node("Cast", [zero_point_f], [zero_point_i32], to=onnx.TensorProto.INT32),
    ], zero_point_i32


def _matmul_without_zero_point(
    node: onnx.NodeProto,
    initializers: dict[str, onnx.TensorProto],
    zero_point_i32: str,
    graph: onnx.GraphProto,
) -> list[onnx.NodeProto]:
    """``MatMulInteger(y, W, zp, W_zp)`` as ``MatMulInteger(y, W, none, W_zp) - zp · Σₖ(W - W_zp)``:
    ONNX Runtime takes only a per-tensor zero point for the activations; the correction is exact."""
    y, weights, _, weights_zero_point = node.input
    (product,) = node.output
    w = numpy_helper.to_array(initializers[weights]).astype(np.int32)
    w_zp = numpy_helper.to_array(initializers[weights_zero_point]).astype(np.int32)
    column_sums = f"{weights}_column_sums"
    if column_sums not in initializers:
        initializers[column_sums] = numpy_helper.from_array((w - w_zp).sum(axis=0, dtype=np.int32), column_sums)
        graph.initializer.append(initializers[column_sums])
    raw, correction = f"{product}_raw", f"{product}_zero_point_share"
    return [
        helper.make_node("MatMulInteger", [y, weights, "", weights_zero_point], [raw], name=node.name),
        helper.make_node("Mul", [zero_point_i32, column_sums], [correction]),
        helper.make_node("Sub", [raw, correction], [product]),
    ]
