"""Load an ONNX file that follows the model-file contract (docs/design.md, contract/model_file.py), check it, and
run it.

Everything the service knows about the model comes from the file: its input/output signature and the
`metadata_props` (labels, input size, resize policy, version, card...). Nothing is imported from training.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from contract import model_file
from contract.cpu import add_int8_entries
from contract.model_file import (
    CAM_NAME,
    EMBEDDING_NAME,
    GOLDEN,
    INPUT_CHANNELS,
    INPUT_NAME,
    OUTLIER_SCORE_NAME,
    OUTPUT_NAME,
)
from serve import golden
from serve.engine_choice import EngineRefused, choose
from serve.settings import ONNXRUNTIME, Settings


class ModelLoadError(Exception):
    """The model file is missing or does not follow the contract; the message is one line."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = " ".join(problem.split())  # ORT messages span lines; the contract is one line
        super().__init__(f"cannot load model {path}: {self.problem}")


T = TypeVar("T")


class ModelChanged(Exception):
    """The loaded file's bytes were changed in place since they were loaded."""


class PinnedFile:
    """The model file as it was loaded: an open descriptor keeps its bytes when the path is replaced (a new file moved
    over it, or deleted), and its hash tells when they were overwritten in place. A session rebuilt at run time
    (serve/runtime/spinning.py) is built from these bytes, never from whatever the path names by then."""

    CHUNK = 1 << 20

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.sha256 = self._digest()

    def _chunks(self) -> Iterator[bytes]:
        size, offset = os.fstat(self.fd).st_size, 0
        while offset < size and (part := os.pread(self.fd, min(size - offset, self.CHUNK), offset)):
            yield part
            offset += len(part)

    def _digest(self) -> str:
        digest = hashlib.sha256()
        for part in self._chunks():
            digest.update(part)
        return digest.hexdigest()

    def _changed(self) -> ModelChanged:
        return ModelChanged(f"the model file was overwritten in place since it was loaded (sha256 {self.sha256})")

    def read(self) -> bytes:
        """The bytes that were loaded; ModelChanged when they are not what the descriptor reads any more."""
        data = b"".join(self._chunks())
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise self._changed()
        return data

    def session(self, build: Callable[[Path | bytes], T]) -> T:
        """`build(source)` on the loaded bytes. Where the system names an open descriptor by a path (/proc/self/fd on
        Linux), the engine reads the file itself through it: given bytes, onnxruntime's Python session keeps them as
        long as it lives, a second copy of the file in memory (12.7 MB for the shipped one). The hash is checked once
        the engine has read: an overwrite before or while it read is still there then, and refused; elsewhere the
        engine gets the bytes."""
        own = Path(f"/proc/self/fd/{self.fd}")
        if not own.exists():
            return build(self.read())
        built = build(own)
        if self._digest() != self.sha256:
            raise self._changed()
        return built


@dataclass(eq=False)
class LoadedModel:
    """A checked model file and what runs it. Not frozen: `session` is the one field that changes, when
    ORT_SPINNING=auto rebuilds it (use_session); every other field is set once, by load_model."""

    path: Path
    # The onnxruntime session that checked the file and runs it; None once another engine runs it (`runner`):
    # kept, it would hold its own copy of the weights for nothing (ENGINE=openvino: 188 -> 181 MB PSS when ready).
    session: ort.InferenceSession | None
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    resize: str
    name: str
    version: str
    metadata: dict[str, Any] = field(repr=False)
    # The optional output `embedding` (float32 [N, D]) is in the file: the prediction log can carry it.
    has_embedding: bool = False
    # The optional output `outlier_score` (float32 [N]) and its threshold from the `outlier` metadata: both or neither.
    outlier_threshold: float | None = None
    engine: str = ONNXRUNTIME
    # (output names, batch) -> outputs, for an engine other than the onnxruntime session that checked the file.
    runner: Callable[[list[str], np.ndarray], list[np.ndarray]] | None = field(default=None, repr=False)
    # GET /model's `engine`: which engine runs the file, the setting that chose it, its golden check, what was tried
    # (serve/engine_choice.py).
    engine_report: dict[str, Any] = field(default_factory=dict, repr=False)
    # The optional output `class_activation` (float32 [N, h, w, classes]) is in the file: answers can say where it
    # looked (serve/explanations.py).
    has_class_activation: bool = False
    # The bytes loaded at start, for any session built later (None: a model made in memory, as tests do).
    pinned: PinnedFile | None = field(default=None, repr=False)

    @property
    def has_outlier_score(self) -> bool:
        return self.outlier_threshold is not None

    def answer_outputs(self, *, embedding: bool) -> list[str]:
        """The outputs an answer reads, in this order: logits, the outlier score when the file has one, and the
        embedding when asked for (the prediction log keeps it) and the file has one."""
        names = [OUTPUT_NAME]
        names += [OUTLIER_SCORE_NAME] if self.has_outlier_score else []
        names += [EMBEDDING_NAME] if embedding and self.has_embedding else []
        return names

    def outputs(self, names: list[str], images: np.ndarray) -> tuple[np.ndarray, ...]:
        """uint8 [N, H, W, 3] -> the named outputs, in `names` order."""
        return tuple(self._outputs(names, images))

    def _outputs(self, names: list[str], images: np.ndarray) -> list[np.ndarray]:
        if self.runner is not None:
            return self.runner(names, images)
        assert self.session is not None  # one of the two is always set (load_model)
        return self.session.run(names, {INPUT_NAME: images})

    def use_session(self, session: ort.InferenceSession) -> None:
        """Run on `session` (the same file, other options) from the next batch on: the one field that changes, when
        ORT_SPINNING=auto rebuilds the session (serve/runtime/spinning.py). A batch running on the old one finishes
        on it."""
        self.session = session

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 logits [N, C]."""
        (logits,) = self._outputs([OUTPUT_NAME], images)
        return logits

    @property
    def quantization(self) -> str:
        """`none` (fp32) or the int8 scheme."""
        return self.metadata.get(model_file.QUANTIZATION, model_file.QUANTIZATION_NONE)

    def describe(self) -> dict[str, Any]:
        """GET /model: every metadata key of the contract, and the engine that runs the file."""
        return model_file.describe(self.metadata) | {"engine": self.engine_report}


def load_configured(settings: Settings) -> LoadedModel:
    """The model as the settings say: MODEL_PATH, ORT_THREADS, ORT_SPINNING, ENGINE."""
    # ORT_SPINNING=auto starts sleeping, until serve/runtime/spinning.py sees lone requests.
    spinning = settings.ort_spinning == "on"
    return load_model(settings.model_path, threads=settings.ort_threads, spinning=spinning, engine=settings.engine)


def load_shadow(settings: Settings) -> LoadedModel:
    """SHADOW_MODEL_PATH's model on one onnxruntime thread (its work is at a lower priority: serve/shadow.py)."""
    assert settings.shadow_model_path is not None
    return load_model(settings.shadow_model_path, threads=1, engine=settings.engine)


def load_model(path: Path, *, threads: int = 0, spinning: bool = False, engine: str = ONNXRUNTIME) -> LoadedModel:
    """Open the file, check the signature and metadata against the contract, choose the engine that runs it (`engine`:
    serve/engine_choice.py, the golden check included), and run it once more with batch 1 and 2. The service passes
    its ENGINE setting (`auto` by default); a tool that measures the file (the benchmarks, export's gates) gets
    onnxruntime, the engine the file's numbers were measured with, unless it asks for another."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(path, "file not found")
    if not path.is_file():
        raise ModelLoadError(path, "not a regular file")
    try:
        pinned = PinnedFile(path)
    except OSError as exc:
        raise ModelLoadError(path, f"cannot be read ({exc.strerror})") from None
    try:
        session = pinned.session(lambda source: ort_session(source, threads=threads, spinning=spinning))
    except Exception as exc:  # ORT raises several unrelated types for unreadable or invalid graphs
        raise ModelLoadError(path, f"not a valid ONNX model ({exc})") from None

    try:
        metadata = model_file.validate(session.get_modelmeta().custom_metadata_map)
    except model_file.ContractError as exc:
        raise ModelLoadError(path, str(exc)) from None
    has_embedding, has_outlier_score = _check_signature(path, session, metadata.input_size, len(metadata.labels))
    try:
        outlier_threshold = model_file.outlier_threshold(metadata.values)
    except model_file.ContractError as exc:
        raise ModelLoadError(path, str(exc)) from None
    if has_outlier_score != (outlier_threshold is not None):
        missing = f"metadata {model_file.OUTLIER!r}" if has_outlier_score else f"output {OUTLIER_SCORE_NAME!r}"
        raise ModelLoadError(path, f"the outlier score needs both its output and its threshold; {missing} is missing")
    outputs = {output.name for output in session.get_outputs()}
    try:
        answers = (
            golden.Golden.from_metadata(metadata.values[GOLDEN], metadata.input_size)
            if GOLDEN in metadata.values
            else None
        )
        choice = choose(engine, path, session, threads=threads, answers=answers, outputs=outputs)
    except (golden.GoldenUnreadable, EngineRefused) as exc:
        raise ModelLoadError(path, str(exc)) from None
    except Exception as exc:  # an engine's run raising: the file breaks the contract for it
        raise ModelLoadError(path, f"a trial run of the golden pictures failed ({exc})") from None
    model = LoadedModel(
        path=path,
        session=None if choice.runner is not None else session,
        labels=metadata.labels,
        input_size=metadata.input_size,
        resize=metadata.resize,
        name=metadata.model_name,
        version=metadata.version,
        metadata=metadata.values,
        has_embedding=has_embedding,
        outlier_threshold=outlier_threshold,
        engine=choice.name,
        runner=choice.runner,
        engine_report=choice.describe(),
        pinned=pinned,
        has_class_activation=CAM_NAME in outputs,
    )
    _check_runs(model)
    return model


def ort_session(model: Path | bytes, *, threads: int = 0, spinning: bool = False) -> ort.InferenceSession:
    """The onnxruntime session the service runs a file (or its bytes) with (raises what onnxruntime raises)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Image decoding runs on the same CPUs: idle ORT workers sleep unless told to spin (settings.ort_spinning;
    # `auto` rebuilds the session as the load changes, serve/runtime/spinning.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
    options.log_severity_level = 4  # our own one-line error replaces ORT's multi-line log
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _check_signature(
    path: Path, session: ort.InferenceSession, size: tuple[int, int], classes: int
) -> tuple[bool, bool]:
    """Raises ModelLoadError unless the graph's signature is the contract's; (has the embedding, has the outlier
    score)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != {INPUT_NAME}:
        raise ModelLoadError(path, f"expected one input {INPUT_NAME!r}, found {sorted(inputs)}")
    if OUTPUT_NAME not in outputs:
        raise ModelLoadError(path, f"no output {OUTPUT_NAME!r} (outputs: {sorted(outputs)})")
    image, logits = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
    expected = [None, size[0], size[1], INPUT_CHANNELS]
    if image.type != "tensor(uint8)" or not _shape_fits(image.shape, expected):
        raise ModelLoadError(
            path, f"input {INPUT_NAME!r} is {image.type} {image.shape}, expected uint8 [N, *input_size, 3]"
        )
    if logits.type != "tensor(float)" or not _shape_fits(logits.shape, [None, classes]):
        raise ModelLoadError(
            path, f"output {OUTPUT_NAME!r} is {logits.type} {logits.shape}, expected float32 [N, {classes}]"
        )
    embedding = outputs.get(EMBEDDING_NAME)
    if embedding is not None and (embedding.type != "tensor(float)" or len(embedding.shape) != 2):
        raise ModelLoadError(
            path, f"output {EMBEDDING_NAME!r} is {embedding.type} {embedding.shape}, expected float32 [N, D]"
        )
    score = outputs.get(OUTLIER_SCORE_NAME)
    if score is not None and (score.type != "tensor(float)" or len(score.shape) != 1):
        raise ModelLoadError(path, f"output {OUTLIER_SCORE_NAME!r} is {score.type} {score.shape}, expected float32 [N]")
    cam = outputs.get(CAM_NAME)
    if cam is not None and (cam.type != "tensor(float)" or not _shape_fits(cam.shape, [None, None, None, classes])):
        raise ModelLoadError(
            path, f"output {CAM_NAME!r} is {cam.type} {cam.shape}, expected float32 [N, h, w, {classes}]"
        )
    return embedding is not None, score is not None


def _shape_fits(shape: list[Any], expected: list[int | None]) -> bool:
    """Symbolic or unknown dims (strings, None) fit anything; fixed dims must match."""
    if len(shape) != len(expected):
        return False
    return all(
        want is None or not isinstance(dim, int) or dim == want for dim, want in zip(shape, expected, strict=True)
    )


def _check_runs(model: LoadedModel) -> None:
    """One real run with batch 1 and 2: the batch dim must be dynamic and the output [N, C]."""
    height, width = model.input_size
    for batch in (1, 2):
        images = np.zeros((batch, height, width, INPUT_CHANNELS), dtype=np.uint8)
        names = model.answer_outputs(embedding=True)
        try:
            outputs = dict(zip(names, model.outputs(names, images), strict=True))
        except Exception as exc:  # any ORT runtime failure means the file breaks the contract
            raise ModelLoadError(model.path, f"a trial run with batch {batch} failed ({exc})") from None
        logits, embedding, score = outputs[OUTPUT_NAME], outputs.get(EMBEDDING_NAME), outputs.get(OUTLIER_SCORE_NAME)
        if score is not None and score.shape != (batch,):
            raise ModelLoadError(
                model.path, f"a trial run with batch {batch} gave an {OUTLIER_SCORE_NAME!r} of shape {score.shape}"
            )
        if embedding is not None and (embedding.ndim != 2 or len(embedding) != batch):
            raise ModelLoadError(
                model.path, f"a trial run with batch {batch} gave an {EMBEDDING_NAME!r} of shape {embedding.shape}"
            )
        if logits.shape != (batch, len(model.labels)) or logits.dtype != np.float32:
            raise ModelLoadError(
                model.path,
                f"a trial run with batch {batch} gave {logits.dtype} {logits.shape}, "
                f"expected float32 ({batch}, {len(model.labels)})",
            )
