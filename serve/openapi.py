"""The OpenAPI description (hand-written: the API is small and its binary/multipart bodies need care) and a
self-contained HTML page rendering it at /docs (no script, nothing fetched from elsewhere)."""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from contract.prediction_log import NONE_OF_THESE as NONE
from contract.prediction_log import REQUEST_ID_PATTERN, THUMBNAIL_MAX_CHARS, VERDICTS
from serve.error_codes import ERROR_TITLES
from serve.feedback import FEEDBACK_MAX_BYTES
from serve.formats import ACCEPTED_FORMATS

DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string", "description": "machine-readable code"}, "detail": {"type": "string"}},
}
_SCORE = {
    "type": "object",
    "required": ["label", "score"],
    "properties": {"label": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
}
_CLASSIFICATION = {
    "type": "object",
    "required": ["label", "score", "top_k", "outlier", "outlier_score", "model", "request_id", "feedback_token"],
    "properties": {
        "label": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "array", "items": {"$ref": "#/components/schemas/Score"}},
        "outlier": {
            "type": ["boolean", "null"],
            "description": "true when the picture looks like none of the model's classes (`label` is then only the "
            "best guess); null when the model file has no outlier score",
        },
        "outlier_score": {
            "type": ["number", "null"],
            "description": "how unlike the training pictures it is (higher: less like them); `outlier` is true above "
            "the model's threshold (GET /model, `outlier.threshold`); null without an outlier score",
        },
        "model": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "request_id": {
            "type": "string",
            "description": "this answer's id (also the X-Request-ID header), for POST /feedback",
        },
        "explanation": {
            "type": ["object", "null"],
            "description": "only with ?explain=1 (null: the model file has no class activation map): `method`, "
            "`label`, `grid` (rows of 0-1 weights over the picture's cells: 1 counted most for the label) and "
            "`heatmap` (base64 PNG: the grid over the picture the model saw)",
            "properties": {
                "method": {"type": "string"},
                "label": {"type": "string"},
                "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "heatmap": {"type": "string"},
            },
        },
        "feedback_token": {
            "type": "string",
            "description": "signed by the service for this answer: POST /feedback takes it as `token`, within "
            "FEEDBACK_WINDOW_S (an hour by default)",
        },
    },
}
_FEEDBACK = {
    "type": "object",
    "required": ["request_id", "token", "label"],
    "additionalProperties": False,
    "properties": {
        "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN.pattern, "description": "the answer's"},
        "token": {"type": "string", "description": "the answer's `feedback_token`"},
        "label": {"type": "string", "description": f"what the picture shows: one of the model's labels, or {NONE}"},
        "predicted": {"type": ["string", "null"], "description": "the answer's label, when given must be the token's"},
        "correct": {"type": ["boolean", "null"], "description": "ignored: the token says what was answered"},
        "share_thumbnail": {"type": "boolean", "default": False, "description": "consent to keep the thumbnail"},
        "thumbnail": {
            "type": "string",
            "maxLength": THUMBNAIL_MAX_CHARS,
            "description": "base64 PNG of the model's input (as the answer's fragment shows it); read only with "
            "`share_thumbnail`",
        },
    },
}
_FEEDBACK_ACCEPTED = {
    "type": "object",
    "required": ["status", "request_id", "verdict"],
    "properties": {
        "status": {"const": "accepted"},
        "request_id": {"type": "string"},
        "verdict": {"enum": list(VERDICTS)},
    },
}
_MODEL = {
    "type": "object",
    "required": ["name", "version", "labels", "input_size", "resize", "quantization"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string", "description": "content hash of the weights"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "input_size": {"type": "array", "items": {"type": "integer"}, "description": "[H, W]"},
        "resize": {"type": "string"},
        "quantization": {"type": "string"},
        "created": {"type": ["string", "null"]},
        "git_sha": {"type": ["string", "null"]},
        "data_md5": {"type": ["string", "null"]},
        "config": {},
        "metrics": {},
        "parity": {},
        "calibration": {"description": "how the scores were calibrated on validation pictures, or null"},
        "outlier": {"description": "the outlier score's method and `threshold`, or null when the file has none"},
        "card": {"description": "the full model card"},
        "tta": {"type": "string", "description": "test-time augmentation inside the graph: none or hflip"},
    },
}
_SITE_CONFIG = {
    "type": "object",
    "required": ["formats", "max_body_bytes", "errors", "headline_metric"],
    "properties": {
        "formats": {
            "type": "array",
            "description": "the formats /classify reads; a file input's accept list is every media_type and extension",
            "items": {
                "type": "object",
                "required": ["name", "media_type", "extensions"],
                "properties": {
                    "name": {"type": "string", "description": "as people write it"},
                    "media_type": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string", "pattern": "^\\."}},
                },
            },
        },
        "max_body_bytes": {"type": "integer", "description": "MAX_BODY_BYTES: a larger body is refused with 413"},
        "errors": {
            "type": "object",
            "description": "the title people read for each error code",
            "propertyNames": {"enum": list(ERROR_TITLES)},
            "additionalProperties": {"type": "string"},
        },
        "headline_metric": {
            "description": "the served file's test top-1 (a fraction), null when the model has none or is loading",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["name", "value"],
                    "properties": {
                        "name": {"type": "string", "description": "its key in the model's metrics"},
                        "value": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    },
                },
                {"type": "null"},
            ],
        },
    },
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
            "text/html": {"schema": {"type": "string"}, "description": 'fragment <div class="error">'},
        },
    }
    if retry:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return response


def _json(description: str, ref: str | None = None) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"} if ref else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@cache
def openapi_spec() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    classify = {
        "summary": "Classify one picture",
        "description": (
            "Send the image bytes as the body (any Content-Type; the format is detected from the bytes: "
            f"{', '.join(fmt.name for fmt in ACCEPTED_FORMATS)}) or a multipart form with the image in the field "
            "`file`. Answers JSON, "
            "or an HTML fragment when the request has `HX-Request: true` or `Accept: text/html` "
            "(errors too, with the same status)."
        ),
        "parameters": [
            {
                "name": "explain",
                "in": "query",
                "required": False,
                "schema": {"enum": ["1", "true"]},
                "description": "add `explanation`: where the model looked (the class activation map of the label), "
                "for a model file that has one; one more run of the model on this picture",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "image/*": binary,
                "application/octet-stream": binary,
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        },
        "responses": {
            "200": {
                "description": "the most likely label, its probability and the top-k",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Classification"}},
                    "text/html": {"schema": {"type": "string"}, "description": 'fragment <section class="result">'},
                },
            },
            "400": _error(
                "empty body (`empty_body`), malformed multipart (`bad_request`), no `file` field "
                "(`missing_file`), empty file (`empty_file`)"
            ),
            "405": _error("method not allowed (`method_not_allowed`); the `Allow` header lists the methods"),
            "408": _error("the upload did not arrive within BODY_TIMEOUT_S (`body_timeout`); the connection is closed"),
            "413": _error(
                "body over MAX_BODY_BYTES (`body_too_large`, refused before reading it) or image over "
                "MAX_PIXELS, half that for AVIF (`too_many_pixels`, refused before decoding)"
            ),
            "415": _error("not an image, or a format the service does not read (`not_an_image`)"),
            "422": _error(
                "an image that cannot be decoded: corrupt or truncated, or starting like a readable format and "
                "then unreadable (`corrupt_image`)"
            ),
            "503": _error(
                "queue full (`overloaded`, answered before the body is read) or model not ready (`not_ready`)",
                retry=True,
            ),
        },
    }
    feedback = {
        "summary": "Say whether an answer was right",
        "description": (
            "A person's verdict on one answer (by its `request_id` and its `feedback_token`), with the thumbnail the "
            "model saw only if they consent (it must be that picture). Written to the prediction log; harvest keeps "
            "the first per answer. Limited per client (FEEDBACK_PER_MINUTE, FEEDBACK_BURST)."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
        },
        "responses": {
            "202": _json("accepted and logged", "FeedbackAccepted"),
            "400": _error(
                "not a JSON object of the known fields, or of the wrong types (`bad_feedback`), a malformed "
                "request_id (`bad_request_id`), a body that cannot be read (`bad_request`)"
            ),
            "408": _error("the body did not arrive in time (`body_timeout`)"),
            "403": _error(
                "a token that is not this answer's (`bad_token`): another request id or label, altered, or not made "
                "by this service"
            ),
            "410": _error("the answer is older than FEEDBACK_WINDOW_S (`feedback_expired`)"),
            "413": _error(f"body over {FEEDBACK_MAX_BYTES} bytes (`body_too_large`)"),
            "415": _error("not `Content-Type: application/json` (`not_json`)"),
            "422": _error(
                "a label or predicted label that is not one of the model's (`unknown_label`); with consent, a "
                "thumbnail that is not a PNG of the model's input size, or not the picture the model saw "
                "(`bad_thumbnail`)"
            ),
            "429": _error("too much feedback from this client (`too_much_feedback`); `Retry-After` says when", True),
            "503": _error(
                "the model is loading (`not_ready`); the bodies in memory are full (`overloaded`); the feedback "
                "cannot be kept (`feedback_not_kept`): no prediction log is configured, or its write queue is full. "
                "202 means the line is in that queue, written within moments unless the process is killed",
                True,
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CIFAR-10 picture classifier",
            "version": "1",
            "description": "Upload a picture, see which CIFAR-10 class it is. Served by onnxruntime, no torch.",
        },
        "paths": {
            "/classify": {"post": classify},
            "/feedback": {"post": feedback},
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": _json('`{"status": "ok"}`')}}},
            "/readyz": {
                "get": {
                    "summary": "The model is loaded and warmed up",
                    "responses": {"200": _json("ready"), "503": _error("not yet (`not_ready`)", retry=True)},
                }
            },
            "/model": {
                "get": {
                    "summary": "The model's metadata and card",
                    "responses": {"200": _json("from the ONNX metadata_props", "Model")},
                }
            },
            "/site-config": {
                "get": {
                    "summary": "What a page needs before it uploads",
                    "description": "the formats, the body limit and the error titles of this service, and the "
                    "model metric to show people; answered while the model loads too",
                    "responses": {"200": _json("the page's facts", "SiteConfig")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "description": "requests by route/method/status, request latency, decode and inference time, "
                    "batch sizes, queue depth, the loaded model, answers by label and their top score, feedback by "
                    "verdict, prediction log lines dropped",
                    "responses": {"200": {"description": "Prometheus text exposition", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {"get": {"summary": "This description", "responses": {"200": _json("OpenAPI 3.1")}}},
            "/docs": {
                "get": {
                    "summary": "This description as a web page",
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Score": _SCORE,
                "Classification": _CLASSIFICATION,
                "Feedback": _FEEDBACK,
                "FeedbackAccepted": _FEEDBACK_ACCEPTED,
                "Model": _MODEL,
                "SiteConfig": _SITE_CONFIG,
            }
        },
    }


_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h2{margin-top:2rem;font-family:ui-monospace,monospace}
.method{display:inline-block;min-width:4rem;padding:0 .4rem;border-radius:.3rem;background:#1b1b1b;color:#fff}
table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}
code{font-family:ui-monospace,monospace}
"""


@cache
def docs_page() -> str:
    spec = openapi_spec()
    sections = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            rows = "".join(
                f"<tr><td><code>{escape(status)}</code></td><td>{escape(response['description'])}</td>"
                f"<td>{escape(', '.join(response.get('content', {})))}</td></tr>"
                for status, response in op["responses"].items()
            )
            body = op.get("requestBody", {}).get("content", {})
            accepts = f"<p>Body: <code>{escape(', '.join(body))}</code></p>" if body else ""
            sections.append(
                f'<section><h2><span class="method">{method.upper()}</span> {escape(path)}</h2>'
                f"<p>{escape(op['summary'])}. {escape(op.get('description', ''))}</p>{accepts}"
                f"<table><tr><th>Status</th><th>Meaning</th><th>Content</th></tr>{rows}</table></section>"
            )
    info = spec["info"]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API</h1><p>{escape(info['description'])} "
        'Machine-readable: <a href="openapi.json">/openapi.json</a>.</p>' + "".join(sections) + "</body></html>"
    )
