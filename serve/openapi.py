"""The OpenAPI description: the bodies' schemas generated from their types (serve/schemas.py), the error responses
from the error codes (serve/error_codes.py); only the paths, the upload's binary and multipart bodies and the
summaries are written here. And a self-contained HTML page rendering it at /docs (no script, nothing fetched)."""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

import msgspec

from contract import model_file
from serve.error_codes import ANY, ErrorCode
from serve.feedback import FEEDBACK_MAX_BYTES
from serve.formats import ACCEPTED_FORMATS
from serve.schemas import SCHEMAS, Classification

DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
REF = "#/components/schemas/{name}"


def schemas() -> dict[str, Any]:
    """The bodies' schemas, generated from serve/schemas.py, and GET /model's from the contract's keys."""
    _, components = msgspec.json.schema_components((*SCHEMAS, Classification), ref_template=REF)
    return components | {"Model": model_schema()}


def model_schema() -> dict[str, Any]:
    """Every key of the contract under its described name (contract/model_file.py: `describe`), and the engine that
    runs the file (serve/engine_choice.py)."""
    named = model_file.DESCRIBED_AS

    def shape(key: str) -> dict[str, Any]:
        if key == model_file.LABELS:
            return {"type": "array", "items": {"type": "string"}}
        if key == model_file.INPUT_SIZE:
            return {"type": "array", "items": {"type": "integer"}, "description": "[H, W]"}
        if key == model_file.GOLDEN:
            return {"description": "the golden answers' summary: how many pictures, the tolerance, the engines it "
                    "was measured with (`model_file.golden_summary`), or null"}  # fmt: skip
        if key in model_file.JSON_KEYS:
            return {"description": "a JSON document from the file, or null"}
        return {"type": "string" if key in model_file.REQUIRED_KEYS else ["string", "null"]}

    return {
        "type": "object",
        "required": [named.get(key, key) for key in model_file.REQUIRED_KEYS],
        "properties": {named.get(key, key): shape(key) for key in model_file.KEYS} | {"engine": ENGINE_SCHEMA},
    }


ENGINE_SCHEMA = {
    "type": "object",
    "description": "the engine that runs the file: `name`, the `setting` (ENGINE) that chose it, its `golden_check` "
    "(`result`: passed, or no golden answers in the file; the `worst` difference and the `tolerance` per output) and "
    "what was `tried` (each candidate's check, its timed images/s under `auto`, or why it was skipped)",
}


def errors(endpoint: str) -> dict[str, Any]:
    """The error responses of `endpoint`, one per status, each listing its codes (serve/error_codes.py)."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in ErrorCode:
        if endpoint in code.endpoints:
            by_status.setdefault(code.status, []).append(code)
    responses = {}
    for status, codes in sorted(by_status.items()):
        described = "; ".join(f"{code.meaning} (`{code.value}`)" for code in codes)
        response: dict[str, Any] = {
            "description": described,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(name="Error")}},
                "text/html": {"schema": {"type": "string"}, "description": 'fragment <div class="error">'},
            },
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        responses[str(status)] = response
    return responses


def _json(description: str, ref: str | None = None) -> dict[str, Any]:
    schema = {"$ref": REF.format(name=ref)} if ref else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, responses: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses} | ({"description": description} if description else {})}


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
                    "application/json": {"schema": {"$ref": REF.format(name="Answer")}},
                    "text/html": {"schema": {"type": "string"}, "description": 'fragment <section class="result">'},
                },
            },
            **errors("/classify"),
        },
    }
    feedback = {
        "summary": "Say whether an answer was right",
        "description": (
            "A person's verdict on one answer (by its `request_id` and its `feedback_token`), with the thumbnail the "
            "model saw only if they consent (it must be that picture). Written to the prediction log; harvest keeps "
            f"the first per answer. At most {FEEDBACK_MAX_BYTES} bytes; limited per client (FEEDBACK_PER_MINUTE, "
            "FEEDBACK_BURST)."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(name="Feedback")}}},
        },
        "responses": {"202": _json("accepted and logged", "FeedbackAccepted"), **errors("/feedback")},
    }
    anywhere = "; ".join(
        f"{code.status} {code.meaning} (`{code.value}`)" for code in ErrorCode if code.endpoints == ANY
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CIFAR-10 picture classifier",
            "version": "1",
            "description": "Upload a picture, see which CIFAR-10 class it is. Served by onnxruntime, no torch. "
            f"Any route may also answer: {anywhere}.",
        },
        "paths": {
            "/classify": {"post": classify},
            "/feedback": {"post": feedback},
            "/healthz": _get("The process is alive", {"200": _json('`{"status": "ok"}`')}),
            "/readyz": _get("The model is loaded and warmed up", {"200": _json("ready"), **errors("/readyz")}),
            "/model": _get(
                "The model's metadata and card",
                {"200": _json("from the ONNX metadata_props", "Model"), **errors("/model")},
            ),
            "/site-config": _get(
                "What a page needs before it uploads",
                {"200": _json("the page's facts", "SiteConfig")},
                "the formats, the body limit and the error titles of this service, and the model metric to show "
                "people; answered while the model loads too",
            ),
            "/metrics": _get(
                "Prometheus metrics",
                {"200": {"description": "Prometheus text exposition", "content": {"text/plain": {}}}},
                "requests by route/method/status, request latency, decode and inference time, batch sizes, queue "
                "depth, the loaded model, answers by label and their top score, feedback by verdict, prediction log "
                "lines dropped",
            ),
            "/openapi.json": _get("This description", {"200": _json("OpenAPI 3.1")}),
            "/docs": _get(
                "This description as a web page", {"200": {"description": "HTML", "content": {"text/html": {}}}}
            ),
        },
        "components": {"schemas": schemas()},
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
