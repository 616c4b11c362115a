"""Give an exported ONNX graph its optional `embedding` output: the penultimate features, after global pooling.

The tensor is the one the classifier head reads: the data input of the last Gemm/MatMul on the way to `logits`. In
an int8 QDQ graph that input is a DequantizeLinear of a QuantizeLinear; the embedding is the float tensor before
them (what the fp32 graph gives, not its int8 rounding). Nothing is recomputed and no weight changes: only a graph
output is added, so `logits` stay the same bit for bit (checked by `python -m export.embedding --check`).

    python -m export.embedding shipped/model.int8.onnx            # in place
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper, shape_inference

from contract.cpu import add_int8_entries
from contract.model_file import EMBEDDING_NAME, OUTPUT_NAME

HEAD_OPS = ("Gemm", "MatMul")
QDQ_OPS = ("DequantizeLinear", "QuantizeLinear")


class EmbeddingError(ValueError):
    """The graph has no classifier head this module recognises."""


def head_input(graph: onnx.GraphProto) -> str:
    """The float tensor the classifier head reads (through QDQ pairs, when quantized)."""
    producer = {out: node for node in graph.node for out in node.output}
    # Walk back from `logits` along first inputs to the head: only QDQ pairs or an Identity lie between (with
    # test-time augmentation, the average of two heads: the first is the unflipped picture's).
    name, head = OUTPUT_NAME, None
    for _ in range(len(graph.node)):
        node = producer.get(name)
        if node is None:
            break
        if node.op_type in HEAD_OPS:
            head = node
            break
        name = node.input[0]
    if head is None:
        raise EmbeddingError(f"no {'/'.join(HEAD_OPS)} found on the way to {OUTPUT_NAME!r}")
    name = head.input[0]
    while name in producer and producer[name].op_type in QDQ_OPS:
        name = producer[name].input[0]
    return name


def add_embedding_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add EMBEDDING_NAME (float32 [N, D]) to the model, in place; a model that has it already is left as it is."""
    graph = model.graph
    if any(output.name == EMBEDDING_NAME for output in graph.output):
        return model
    source = head_input(graph)
    width = _feature_width(graph, source)
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    graph.node.append(helper.make_node("Identity", [source], [EMBEDDING_NAME], name="embedding_output"))
    output = helper.make_tensor_value_info(EMBEDDING_NAME, TensorProto.FLOAT, [None, width])
    output.type.tensor_type.shape.dim[0].CopyFrom(batch)  # the same symbolic batch dim as `logits`
    graph.output.append(output)
    return model


def head_nodes(graph: onnx.GraphProto, source: str) -> list[onnx.NodeProto]:
    """The Gemm/MatMul nodes that read `source` (through QDQ pairs): the classifier head."""
    producer = {out: node for node in graph.node for out in node.output}
    heads = []
    for node in graph.node:
        if node.op_type not in HEAD_OPS or len(node.input) < 2:
            continue
        reads = node.input[0]
        while reads in producer and producer[reads].op_type in QDQ_OPS and reads != source:
            reads = producer[reads].input[0]
        if reads == source:
            heads.append(node)
    return heads


def float_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every float tensor's inferred shape (None for a dimension that is not a number), by name."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        tensor = info.type.tensor_type
        if tensor.elem_type == TensorProto.FLOAT and tensor.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return shapes


def _feature_width(graph: onnx.GraphProto, source: str) -> int | None:
    """D, from the head's weight: Gemm's B is [classes, D] with transB=1 (PyTorch Linear), else [D, classes]."""
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    for node in head_nodes(graph, source):
        weight = node.input[1]
        while weight in producer and producer[weight].op_type in QDQ_OPS:
            weight = producer[weight].input[0]
        if weight in initializers:
            dims = list(initializers[weight].dims)
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            return dims[1] if (node.op_type == "Gemm" and trans_b) else dims[0]
    return None


def add_to_file(path: Path) -> None:
    """Add the output to the file at `path`, in place (a file that has one is not rewritten)."""
    model = onnx.load(str(path))
    if any(output.name == EMBEDDING_NAME for output in model.graph.output):
        return
    add_embedding_output(model)
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def logits_unchanged(before: Path, after: Path, images) -> bool:
    """Both files give the same logits, bit for bit, on `images` (uint8 [N, H, W, 3])."""
    import numpy as np
    import onnxruntime as ort

    from contract.model_file import INPUT_NAME

    def logits(path: Path):
        options = ort.SessionOptions()
        add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    return bool(np.array_equal(logits(before), logits(after)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.embedding", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX file to give the output to, in place")
    parser.add_argument("--check", type=Path, help="prepared data dir: verify logits are unchanged on its test set")
    args = parser.parse_args(argv)
    original = args.model.read_bytes()
    try:
        add_to_file(args.model)
    except EmbeddingError as exc:
        print(f"export.embedding: {args.model}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        import tempfile

        import numpy as np

        images = np.load(args.check / "test_images.npy")
        with tempfile.TemporaryDirectory() as tmp:
            before = Path(tmp) / "before.onnx"
            before.write_bytes(original)
            if not logits_unchanged(before, args.model, images):
                args.model.write_bytes(original)
                print(f"export.embedding: {args.model}: logits changed; file restored", file=sys.stderr)
                return 1
        print(f"logits unchanged bit for bit on {len(images)} test images")
    print(f"{args.model}: output {EMBEDDING_NAME!r} present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
