"""python -m export.recover_weights [INT8.onnx] [--out W.safetensors]: fp32 network weights out of an int8 release.

An int8 file of `python -m export` holds every weight as per-channel symmetric int8 (files of some releases store
them as uint8 + 128: the same values) with its scale, the BatchNorms folded into the convolutions, and each conv's
folded bias as int32 on the scale input_scale x weight_scale. Dequantized, `(q - zero_point) * scale`, they are the
weights the int8 model computes with. Loaded into the training network with each BatchNorm set to the identity
(weight 1, bias = the folded bias, running mean 0, running variance 1 - eps, so that var + eps == 1.0 exactly in
float32), they give a PyTorch network that exports through the normal path and quantizes back to the same int8
weights: the largest |q| of every channel is 127, so its scale comes back the same and every q rounds back to
itself.

The shipped weights (shipped/weights/resnet18-cifar10.safetensors) were recovered this way from release 662bcc9c2096,
whose fp32 checkpoint lives only in the deployed system's bucket (models.dvc). Measured at recovery, on the 10,000
test images: the recovered network 91.69 % top-1 in PyTorch, against 91.66 % of the original fp32 and 91.73 % of the
int8 release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from contract import model_file
from contract.paths import PROCESSED_DIR, PROJECT_ROOT, SHIPPED_DIR
from export import checkpoint, metadata
from export.errors import ExportError
from export.evaluation import load_split
from train.models import build

DEFAULT_SOURCE = SHIPPED_DIR / "model.int8.onnx"
DEFAULT_OUT = SHIPPED_DIR / "weights" / "resnet18-cifar10.safetensors"
METHOD = (
    "dequantized int8 weights, (q - zero_point) * scale, of the release's convolutions (BatchNorm folded into them, "
    "their folded biases dequantized from int32) and head; each BatchNorm is the identity: weight 1, bias = the "
    "folded bias, running mean 0, running variance 1 - eps"
)


def dequantize_initializers(graph: onnx.GraphProto) -> dict[str, tuple[str, np.ndarray]]:
    """Every DequantizeLinear of constant inputs: its output name -> (the quantized tensor's name, float32 value)."""
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(name in initializers for name in node.input):
            continue
        q, scale, zero_point = (initializers[name] for name in node.input)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and q.ndim > 1:  # per channel along `axis`
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        value = (q.astype(np.int64) - zero_point.astype(np.int64)).astype(np.float32) * scale.astype(np.float32)
        values[node.output[0]] = (node.input[0], value.astype(np.float32))
    return values


def identity_variance(eps: float) -> np.float32:
    """The float32 running variance v with float32(v + eps) == 1.0, so 1 / sqrt(v + eps) is exactly 1."""
    eps32, var = np.float32(eps), np.float32(1) - np.float32(eps)
    while np.float32(var + eps32) != np.float32(1):
        var = np.nextafter(var, np.float32(2) if var + eps32 < 1 else np.float32(0))
    return var


def conv_batchnorms(net: torch.nn.Module) -> dict[str, str]:
    """Each convolution's BatchNorm: the next BatchNorm2d after it in module order (conv1 -> bn1, downsample.0 ->
    downsample.1 in timm's ResNet)."""
    pairs, conv = {}, None
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            conv = name
        elif isinstance(module, torch.nn.BatchNorm2d) and conv is not None:
            pairs[conv], conv = name, None
    return pairs


def recovered_state(model: onnx.ModelProto, net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `net` from the int8 graph `model` (raises ExportError if a tensor is left unfilled)."""
    graph = model.graph
    dequantized = dequantize_initializers(graph)
    modules = dict(net.named_modules())
    batchnorms = conv_batchnorms(net)
    state = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    filled: set[str] = set()

    def put(name: str, value: np.ndarray) -> None:
        if name not in state or tuple(state[name].shape) != value.shape:
            raise ExportError(f"{name}: {value.shape} does not fit the network")
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32))  # a copy: writable, contiguous
        filled.add(name)

    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        weight_source, weight = dequantized[node.input[1]]
        module = weight_source.removesuffix("_quantized").removesuffix(".weight")
        bias = dequantized[node.input[2]][1] if len(node.input) > 2 and node.input[2] else None
        put(f"{module}.weight", weight)
        if isinstance(modules.get(module), torch.nn.Conv2d) and module in batchnorms:
            bn_name = batchnorms[module]
            bn = modules[bn_name]
            put(f"{bn_name}.weight", np.ones(bn.num_features, np.float32))
            put(f"{bn_name}.bias", bias if bias is not None else np.zeros(bn.num_features, np.float32))
            put(f"{bn_name}.running_mean", np.zeros(bn.num_features, np.float32))
            put(f"{bn_name}.running_var", np.full(bn.num_features, identity_variance(bn.eps), np.float32))
        elif bias is not None:
            put(f"{module}.bias", bias)
    initializers = {init.name: init for init in graph.initializer}
    for name in ("preprocess.mean", "preprocess.std"):
        put(name, numpy_helper.to_array(initializers[name]))
    unfilled = sorted(name for name in set(state) - filled if not name.endswith("num_batches_tracked"))
    if unfilled:
        raise ExportError(f"the int8 graph has no value for {len(unfilled)} tensors, e.g. {unfilled[:3]}")
    return state


def torch_top1(net: torch.nn.Module, data_dir: Path) -> float:
    images, labels = load_split("test", data_dir)
    with torch.inference_mode():
        batches = [net(torch.from_numpy(images[i : i + 500])).argmax(1) for i in range(0, len(images), 500)]
    predicted = torch.cat(batches)
    return float((predicted.numpy() == labels).mean())


def recover(source: Path, out: Path, data_dir: Path | None = PROCESSED_DIR) -> checkpoint.LoadedCheckpoint:
    """Write `out` (+ its sidecar) from the int8 file `source`; measures PyTorch top-1 when `data_dir` is given."""
    model = metadata.load_model(source)
    props = metadata.read(source)
    card = props.get(model_file.CARD) or {}
    config = props.get(model_file.CONFIG) or card.get(model_file.CONFIG) or {}
    hparams = {key: value for key, value in (config.get("model") or {}).items() if not key.startswith("_")}
    if "arch" not in hparams:
        raise ExportError(f"{source}: its config names no architecture (config.model.arch)")
    net = build(hparams["arch"], int(hparams.get("num_classes", 10)), **(hparams.get("arch_kwargs") or {}))
    net.load_state_dict(recovered_state(model, net), strict=True)
    net.eval()
    training = card.get("training") or {}
    shown = source.resolve().relative_to(PROJECT_ROOT) if source.resolve().is_relative_to(PROJECT_ROOT) else source
    origin = {
        "recovered_from": {
            "file": str(shown),
            "model_name": props[model_file.MODEL_NAME],
            "version": props[model_file.VERSION],
            "created": props.get(model_file.CREATED),
            "git_sha": props.get(model_file.GIT_SHA),
            "data_md5": props.get(model_file.DATA_MD5),
            "quantization": props.get(model_file.QUANTIZATION),
            "metrics": props.get(model_file.METRICS),
        },
        "method": METHOD,
    }
    if data_dir is not None:
        origin["test_top1_pytorch"] = torch_top1(net, data_dir)
    loaded = checkpoint.LoadedCheckpoint(
        path=out,
        net=net,
        labels=list(props[model_file.LABELS]),
        hparams=hparams,
        training={  # the run that trained the weights before they were quantized: its results and config
            "test_top1": training.get("test_top1_pytorch"),
            "per_class_accuracy": training.get("per_class_accuracy"),
            "confusion_matrix": training.get("confusion_matrix"),
            "epochs": training.get("epochs"),
            "labels": list(props[model_file.LABELS]),
            "config": config,
        },
    )
    checkpoint.save_weights(loaded, out, origin=origin)
    loaded.origin = origin
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.recover_weights", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, nargs="?", default=DEFAULT_SOURCE, help="int8 file of `python -m export`")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .safetensors file (its JSON beside it)")
    parser.add_argument("--data-dir", type=Path, default=PROCESSED_DIR, help="prepared data (PyTorch test top-1)")
    parser.add_argument("--no-measure", action="store_true", help="skip the PyTorch test top-1 (minutes on a CPU)")
    args = parser.parse_args(argv)
    try:
        loaded = recover(args.source, args.out, None if args.no_measure else args.data_dir)
    except ExportError as exc:
        print(f"export.recover_weights: {exc}", file=sys.stderr)
        return 1
    measured = loaded.origin.get("test_top1_pytorch")
    print(
        f"wrote {args.out} (version {checkpoint.weights_hash(loaded.net)})"
        + (f": PyTorch test top-1 {measured:.2%}" if measured is not None else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
