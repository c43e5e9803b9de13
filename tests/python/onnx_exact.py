#!/usr/bin/python3
"""Evaluates an ONNX graph exactly as its operators specify, independent of ONNX Runtime and lathe.

    /usr/bin/python3 onnx_exact.py MODEL.onnx INPUT.bin BATCH SEQ OUTPUT.bin
    /usr/bin/python3 onnx_exact.py --check-runtime MODEL.onnx INPUT.bin BATCH SEQ REPORT.json [LEVEL]

INPUT.bin holds BATCH*SEQ int64 little-endian token ids; OUTPUT.bin receives the `logits`
output as float32 little-endian. Float operators compute in float64; integer operators
(MatMulInteger, the int8/uint8 values of QuantizeLinear and DynamicQuantizeLinear) compute in
int64, so no accumulator can overflow or saturate. Quantization parameters that the graph
computes (DynamicQuantizeLinear's scale and zero point) are rounded to float32 as the operator
defines them. This is the arithmetic an int8 kernel must reproduce.

--check-runtime compares ONNX Runtime with this evaluation one quantized step at a time. An int8
graph amplifies rounding: one activation that two float evaluations put on different sides of a
quantizer's rounding boundary changes, through a dynamically computed per-tensor scale, every
value of the tensors after it, so end-to-end logits of two correct evaluations can differ at
every position. So the check runs ONNX Runtime (tests/node/run_onnx.js, all optimizations) on a
copy of the graph that also outputs every quantizer's input and every quantized MatMul's result
(values ONNX Runtime computes anyway, so its fusions into integer kernels still happen), then
evaluates the graph here with each of those values replaced by ONNX Runtime's own, and compares
every one of them, and the logits, with what this evaluation computes from ONNX Runtime's inputs
to it. Quantizers then divide float32 by float32 as the operators do, so both sides pick the same
integers, and a correct runtime differs only by float rounding (relative ~1e-6); a kernel that
saturates or drops a zero point differs at the step where it does. REPORT.json lists the steps
with op, largest difference and largest magnitude.

Only the operators lathe's ONNX writer emits are implemented; any other is an error.
Debian's python3 with python3-onnx and python3-numpy; external data files are read too.
"""

import json
import math
import sys

import numpy as np
import onnx
from onnx import numpy_helper

INTEGER_TYPES = (np.int8, np.uint8, np.int32, np.int64)


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def as_float(x):
    return x.astype(np.float64) if x.dtype in (np.float32, np.float16) else x


def round_half_even(x):
    return np.rint(x)  # numpy rounds half to even


def saturate(x, dtype):
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max)


def divide_for_quantizer(x, scale):
    # ONNX defines the quantizers on float32 tensors: x / y_scale in float32. The end-to-end
    # evaluation carries float64 values; a runtime's own float32 values divide as float32.
    if x.dtype == np.float32:
        return x / scale.astype(np.float32)
    return x / scale.astype(np.float64)


def along_axis(scale, zero_point, ndim, axis):
    """Scale and zero point shaped to broadcast against a tensor of `ndim` dimensions: per tensor,
    or per channel along `axis`."""
    if scale.ndim != 1:
        return scale, zero_point
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape), zero_point.reshape(shape)


def quantize_linear(x, scale, zero_point, axis):
    zero_point = zero_point if zero_point is not None else np.zeros((), np.uint8)
    scale, zero_point = along_axis(scale, zero_point, x.ndim, axis)
    q = round_half_even(divide_for_quantizer(x, scale)).astype(np.int64) + zero_point.astype(np.int64)
    return saturate(q, zero_point.dtype).astype(zero_point.dtype)


def dequantize_linear(x, scale, zero_point, axis):
    zero_point = zero_point if zero_point is not None else np.zeros((), x.dtype)
    scale, zero_point = along_axis(scale.astype(np.float64), zero_point, x.ndim, axis)
    return (x.astype(np.int64) - zero_point.astype(np.int64)) * scale


def dynamic_quantize_linear(x):
    low = np.float32(min(0.0, float(x.min())))
    high = np.float32(max(0.0, float(x.max())))
    scale = np.float32((high - low) / np.float32(255.0))
    if scale == 0:
        zero_point = np.uint8(0)
        return np.zeros(x.shape, np.uint8), np.array(scale, np.float32), np.array(zero_point, np.uint8)
    zero_point = np.uint8(np.clip(round_half_even(np.float32(0.0) - low / scale), 0, 255))
    q = round_half_even(divide_for_quantizer(x, np.array(scale, np.float32))).astype(np.int64) + int(zero_point)
    q = saturate(q, np.uint8).astype(np.uint8)
    return q, np.array(scale, np.float32), np.array(zero_point, np.uint8)


def softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def layer_normalization(x, scale, bias, axis, epsilon):
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(variance + epsilon) * scale
    return y + bias if bias is not None else y


CAST_TYPES = {
    onnx.TensorProto.FLOAT: np.float64,  # float values stay float64: this evaluator's float
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
}


def run_node(node, inputs):
    op, a = node.op_type, attributes(node)
    x = inputs[0] if inputs else None
    if op in ("Add", "Sub", "Mul", "Div"):
        left, right = inputs
        if left.dtype in INTEGER_TYPES and right.dtype in INTEGER_TYPES and op != "Div":
            left, right = left.astype(np.int64), right.astype(np.int64)
        return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](left, right)]
    if op == "Pow":
        return [np.power(x, inputs[1].astype(np.float64))]
    if op == "Sqrt":
        return [np.sqrt(x)]
    if op == "Sigmoid":
        return [1.0 / (1.0 + np.exp(-x))]
    if op == "Tanh":
        return [np.tanh(x)]
    if op == "Erf":
        return [np.vectorize(math.erf)(x)]
    if op == "Relu":
        return [np.maximum(x, 0.0)]
    if op == "Clip":
        low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else -np.inf
        high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.inf
        return [np.clip(x, low, high)]
    if op == "MatMul":
        return [np.matmul(as_float(x), as_float(inputs[1]))]
    if op == "MatMulInteger":
        a_zero = inputs[2].astype(np.int64) if len(inputs) > 2 and inputs[2] is not None else 0
        b_zero = inputs[3].astype(np.int64) if len(inputs) > 3 and inputs[3] is not None else 0
        return [np.matmul(x.astype(np.int64) - a_zero, inputs[1].astype(np.int64) - b_zero)]
    if op == "QuantizeLinear":
        return [quantize_linear(x, inputs[1], inputs[2] if len(inputs) > 2 else None, a.get("axis", 1))]
    if op == "DequantizeLinear":
        return [dequantize_linear(x, inputs[1], inputs[2] if len(inputs) > 2 else None, a.get("axis", 1))]
    if op == "DynamicQuantizeLinear":
        return list(dynamic_quantize_linear(x))
    if op == "Cast":
        return [x.astype(CAST_TYPES[a["to"]])]
    if op == "Softmax":
        return [softmax(x, a.get("axis", -1))]
    if op == "LayerNormalization":
        return [layer_normalization(x, inputs[1], inputs[2] if len(inputs) > 2 else None, a.get("axis", -1),
                                    a.get("epsilon", 1e-5))]
    if op == "ReduceMean":
        return [x.mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))]
    if op == "ReduceSum":
        axes = tuple(inputs[1].tolist()) if len(inputs) > 1 else None
        return [x.sum(axis=axes, keepdims=bool(a.get("keepdims", 1)))]
    if op == "Gather":
        return [np.take(x, inputs[1].astype(np.int64), axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        y = x
        for axis in sorted(int(v) % (x.ndim + len(inputs[1])) for v in inputs[1]):
            y = np.expand_dims(y, axis)
        return [y]
    if op == "Reshape":
        shape = [x.shape[i] if v == 0 else int(v) for i, v in enumerate(inputs[1])]
        return [x.reshape(shape)]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op == "Concat":
        return [np.concatenate(inputs, axis=a["axis"])]
    if op == "Split":
        axis = a.get("axis", 0)
        sizes = inputs[1] if len(inputs) > 1 else [x.shape[axis] // len(node.output)] * len(node.output)
        return np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    if op == "Slice":
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else range(len(starts))
        index = [slice(None)] * x.ndim
        for start, end, axis in zip(starts, ends, axes):
            index[int(axis)] = slice(int(start), int(min(end, x.shape[int(axis)])))
        return [x[tuple(index)]]
    if op == "Shape":
        return [np.array(x.shape[a.get("start", 0):a.get("end", x.ndim)], np.int64)]
    if op == "ConstantOfShape":
        value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full(tuple(int(v) for v in x), as_float(value).reshape(-1)[0], as_float(value).dtype)]
    if op == "Trilu":
        k = int(inputs[1]) if len(inputs) > 1 else 0
        return [np.triu(x, k) if a.get("upper", 1) else np.tril(x, k)]
    raise SystemExit(f"onnx_exact.py: operator {op} is not implemented")


def evaluate(model, feeds, forced=None, on_forced=None):
    """All values of the graph. `forced` maps value names to values that replace what this
    evaluation computes for them; on_forced(node, name, computed, forced) sees each replacement."""
    values = dict(feeds)
    for initializer in model.graph.initializer:
        values[initializer.name] = as_float(numpy_helper.to_array(initializer))
    for node in model.graph.node:
        inputs = [values[name] if name else None for name in node.input]
        for name, value in zip(node.output, run_node(node, inputs)):
            if forced is not None and name in forced:
                on_forced(node, name, value, forced[name])
                value = forced[name]
            values[name] = value
    return values


def quantized_steps(model):
    """Names of every quantizer's input and every quantized MatMul's result."""
    producer = {output: node for node in model.graph.node for output in node.output}
    def made_by(name, op):
        return name in producer and producer[name].op_type == op
    names = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear"):
            names.append(node.input[0])
        elif node.op_type == "MatMul" and any(made_by(name, "DequantizeLinear") for name in node.input):
            names.append(node.output[0])
        elif node.op_type == "Mul" and any(made_by(name, "Cast") and made_by(producer[name].input[0], "MatMulInteger")
                                           for name in node.input):
            names.append(node.output[0])
    graph_inputs = {value.name for value in model.graph.input}
    return [name for name in dict.fromkeys(names) if name not in graph_inputs]


ONNX_RUNTIME_TYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int32": np.int32, "int64": np.int64}


def check_runtime(model_path, input_path, batch, sequence, report_path, optimization="all"):
    import os
    import subprocess
    import tempfile
    model = onnx.load(model_path)
    ids = np.fromfile(input_path, dtype="<i8").reshape(batch, sequence)
    steps = quantized_steps(model)
    traced = onnx.load(model_path)
    for name in steps:
        traced.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "run_onnx.js")
    with tempfile.TemporaryDirectory() as folder:
        traced_path = os.path.join(folder, "traced.onnx")
        if traced.ByteSize() > 1 << 30:  # a protobuf holds at most 2 GB: large weights go beside it
            onnx.save(traced, traced_path, save_as_external_data=True, location="traced.onnx.data")
        else:
            onnx.save(traced, traced_path)
        subprocess.run(["node", runner, traced_path, input_path, str(batch), str(sequence),
                        os.path.join(folder, "logits.bin"), "--threads", "1", "--optimization", optimization,
                        "--all-outputs", folder], check=True)
        runtime = {}
        for entry in json.load(open(os.path.join(folder, "outputs.json"))):
            data = np.fromfile(os.path.join(folder, entry["file"]), dtype=ONNX_RUNTIME_TYPES[entry["type"]])
            runtime[entry["name"]] = data.reshape(entry["dims"])
    report = []
    def compare(node, name, computed, forced):
        difference = np.abs(np.asarray(computed, np.float64) - forced.astype(np.float64))
        report.append({"name": name, "op": node.op_type, "max_difference": float(difference.max()),
                       "max_magnitude": float(np.abs(forced).max())})
    evaluate(model, {"input_ids": ids}, runtime, compare)
    with open(report_path, "w") as out:
        json.dump(report, out, indent=1)


def main(argv):
    if len(argv) in (7, 8) and argv[1] == "--check-runtime":
        model_path, input_path, batch, sequence, report_path = argv[2:7]
        check_runtime(model_path, input_path, int(batch), int(sequence), report_path, *argv[7:])
        return
    if len(argv) != 6:
        raise SystemExit(__doc__)
    model_path, input_path, batch, sequence, output_path = argv[1:]
    model = onnx.load(model_path)  # loads external data beside the file
    ids = np.fromfile(input_path, dtype="<i8").reshape(int(batch), int(sequence))
    logits = evaluate(model, {"input_ids": ids})["logits"]
    np.asarray(logits, dtype="<f4").tofile(output_path)


if __name__ == "__main__":
    main(sys.argv)
