"""Give an exported convolutional graph its optional `class_activation` output (contract.model_file.CAM_NAME): the
class activation map (Zhou et al., "Learning Deep Features for Discriminative Localization", 2016), where it looked.

The network ends in global average pooling and one linear head, so a class's logit is the mean over the last feature
map's cells of (head weights . cell) plus the bias: applying the head to each cell instead says how much each region
gave each class. The map is the last [N, D, h, w] float tensor before the pooling (4 x 4 for the CIFAR ResNet-18);
the head's weights are read from the graph (dequantized in an int8 file). Nothing on the way to `logits` changes:
the branch is computed only when a caller asks for the output (the service: only for `?explain=1`). The MLP has no
map, and gets no output. Faithfulness and cost against occlusion: evaluation/explanation_faithfulness.py, docs/trust.md.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.model_file import CAM_NAME
from export.embedding import float_shapes, head_input, head_nodes


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def head_weights(graph: onnx.GraphProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(W [classes, D], b [classes]) of the head that reads the embedding, as floats; None when they are not
    constants of the graph."""
    source, producer = head_input(graph), _producers(graph)
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}

    def constant(name: str) -> np.ndarray | None:
        if name in initializers:
            return initializers[name].astype(np.float64)
        node = producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and all(i in initializers for i in node.input):
            values, scale, *zero = (initializers[i] for i in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * values.ndim
            if scale.ndim:
                shape[axis] = -1
            zero_point = zero[0].astype(np.float64).reshape(shape) if zero else 0.0
            return (values.astype(np.float64) - zero_point) * scale.astype(np.float64).reshape(shape)
        return None

    for node in head_nodes(graph, source):
        weight = constant(node.input[1])
        bias = constant(node.input[2]) if len(node.input) > 2 else None
        if weight is None:
            return None
        if node.op_type == "Gemm" and next((a.i for a in node.attribute if a.name == "transB"), 0):
            weight = weight.T  # PyTorch's Linear: [classes, D] stored, [D, classes] applied
        weight = weight.T  # [classes, D]
        return weight, np.zeros(weight.shape[0]) if bias is None else bias
    return None


def last_map(model: onnx.ModelProto, width: int) -> tuple[str, int, int] | None:
    """(name, h, w) of the last float [N, width, h, w] tensor the graph makes with h, w > 1: the map the pooling
    reads (width: the head's input width, so that an MLP's input picture is never taken for one)."""
    shapes = float_shapes(model)
    found = None
    for node in model.graph.node:
        for name in node.output:
            shape = shapes.get(name)
            if shape and len(shape) == 4 and shape[1] == width and (shape[2] or 0) > 1 and (shape[3] or 0) > 1:
                found = (name, shape[2], shape[3])
    return found


def add_class_activation(model: onnx.ModelProto) -> bool:
    """Add CAM_NAME to the model, in place; False (and nothing added) for a graph without a feature map or a constant
    head (the MLP)."""
    graph = model.graph
    if any(output.name == CAM_NAME for output in graph.output):
        return True
    weights = head_weights(graph)
    found = None if weights is None else last_map(model, weights[0].shape[1])
    if found is None or weights is None:
        return False
    name, height, width = found
    weight, bias = weights
    graph.initializer.extend([
        numpy_helper.from_array(weight.T.astype(np.float32), "class_activation.weight"),  # [D, classes]
        numpy_helper.from_array((bias / (height * width)).astype(np.float32), "class_activation.bias"),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("Transpose", [name], ["class_activation/cells"], name="class_activation/cells",
                         perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["class_activation/cells", "class_activation.weight"], ["class_activation/mapped"],
                         name="class_activation/mapped"),
        helper.make_node("Add", ["class_activation/mapped", "class_activation.bias"], [CAM_NAME],
                         name="class_activation/biased"),
    ])  # fmt: skip
    classes = weight.shape[0]
    output = helper.make_tensor_value_info(CAM_NAME, TensorProto.FLOAT, [None, height, width, classes])
    output.type.tensor_type.shape.dim[0].CopyFrom(graph.output[0].type.tensor_type.shape.dim[0])
    graph.output.append(output)
    return True


def add_to_file(path) -> bool:
    """Add the output to the file at `path`, in place; whether the graph has one now."""
    model = onnx.load(str(path))
    if not add_class_activation(model):
        return False
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return True
