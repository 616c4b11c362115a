"""The API's bodies as types: what POST /classify answers, what POST /feedback takes and answers, the error body and
GET /site-config. Encoded and validated by msgspec (in C: its encoding costs less than the json module's), and the
OpenAPI document's schemas are generated from these same classes (serve/openapi.py), so each shape is written once."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from contract.prediction_log import NONE_OF_THESE, REQUEST_ID_PATTERN, THUMBNAIL_MAX_CHARS, VERDICTS
from serve.error_codes import ErrorCode

Probability = Annotated[float, Meta(ge=0, le=1)]


class Score(Struct):
    label: str
    score: Probability


class ModelId(Struct):
    name: str
    version: Annotated[str, Meta(description="content hash of the weights")]


class Explanation(Struct):
    """Where the model looked: the class activation map of `label`."""

    method: str
    label: str
    grid: Annotated[
        list[list[float]], Meta(description="rows of 0-1 weights over the picture's cells (1: counted most)")
    ]
    heatmap: Annotated[str, Meta(description="base64 PNG: the grid over the picture the model saw")]


class Classification(Struct):
    """The model's answer for one picture: the best guess and the top k (calibrated probabilities when the file is
    calibrated), and whether the picture looks like none of the classes."""

    label: str
    score: Probability
    top_k: list[Score]
    outlier: Annotated[
        bool | None,
        Meta(description="true when the picture looks like none of the model's classes (`label` is then only the "
             "best guess); null when the model file has no outlier score"),
    ]  # fmt: skip
    outlier_score: Annotated[
        float | None,
        Meta(description="how unlike the training pictures it is (higher: less like them); `outlier` is true above "
             "the model's threshold (GET /model, `outlier.threshold`); null without an outlier score"),
    ]  # fmt: skip
    model: ModelId


class Answer(Classification):
    """POST /classify's answer: the classification, the answer's id and its feedback token."""

    request_id: Annotated[str, Meta(description="this answer's id (also the X-Request-ID header), for POST /feedback")]
    feedback_token: Annotated[
        str,
        Meta(description="signed by the service for this answer: POST /feedback takes it as `token`, within "
             "FEEDBACK_WINDOW_S (an hour by default)"),
    ]  # fmt: skip
    explanation: Annotated[
        Explanation | None,
        Meta(description="only with ?explain=1 (null: the model file has no class activation map)"),
    ] | UnsetType = UNSET  # fmt: skip


class Feedback(Struct, forbid_unknown_fields=True):
    """POST /feedback's body: a person's verdict on one answer."""

    request_id: Annotated[str, Meta(pattern=f"^{REQUEST_ID_PATTERN.pattern}$", description="the answer's")]
    token: Annotated[str, Meta(description="the answer's `feedback_token`")]
    label: Annotated[str, Meta(description=f"what the picture shows: one of the model's labels, or {NONE_OF_THESE}")]
    predicted: Annotated[str | None, Meta(description="the answer's label; must match the token's")] = None
    correct: Annotated[bool | None, Meta(description="ignored: the token says what was answered")] = None
    share_thumbnail: Annotated[bool, Meta(description="consent to keep the thumbnail with the correction")] = False
    thumbnail: Annotated[
        str | None,
        Meta(description=f"base64 PNG of the model's input, at most {THUMBNAIL_MAX_CHARS} characters (the answer's "
             "fragment shows it); read only with `share_thumbnail`"),
    ] = None  # fmt: skip


class FeedbackAccepted(Struct):
    status: Annotated[str, Meta(pattern="^accepted$")]
    request_id: str
    verdict: Literal[VERDICTS]  # type: ignore[valid-type]


class Error(Struct):
    error: Annotated[ErrorCode, Meta(description="machine-readable code")]
    detail: str


class Format(Struct):
    name: Annotated[str, Meta(description="as people write it")]
    media_type: str
    extensions: list[Annotated[str, Meta(pattern="^\\.")]]


class HeadlineMetric(Struct):
    name: Annotated[str, Meta(description="its key in the model's metrics")]
    value: Annotated[float, Meta(gt=0, le=1)]


class SiteConfig(Struct):
    """What a page needs before it uploads."""

    formats: Annotated[
        list[Format],
        Meta(description="the formats /classify reads; a file input's accept list is every media_type and extension"),
    ]
    max_body_bytes: Annotated[int, Meta(description="MAX_BODY_BYTES: a larger body is refused with 413")]
    errors: Annotated[dict[ErrorCode, str], Meta(description="the title people read for each error code")]
    headline_metric: Annotated[
        HeadlineMetric | None,
        Meta(description="the served file's test top-1 (a fraction), null when the model has none or is loading"),
    ]


SCHEMAS = (Answer, Feedback, FeedbackAccepted, Error, SiteConfig)
ENCODER = msgspec.json.Encoder()
