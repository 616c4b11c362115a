"""HTML fragments for the htmx page. The class names and data attributes are the site's styling hooks."""

from __future__ import annotations

from html import escape

from starlette.requests import Request

ERROR_TITLES = {
    "empty_body": "Nothing was uploaded",
    "empty_file": "The file is empty",
    "missing_file": "No file in the upload",
    "bad_request": "The upload could not be read",
    "not_an_image": "That is not a picture we can read",
    "corrupt_image": "The picture is damaged",
    "body_too_large": "The file is too big",
    "body_timeout": "The upload took too long",
    "too_many_pixels": "The picture has too many pixels",
    "overloaded": "The service is busy",
    "not_ready": "The service is starting",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "internal_error": "Something went wrong on our side",
}


def wants_html(request: Request) -> bool:
    """htmx sends HX-Request: true; a browser form post asks for text/html."""
    return request.headers.get("hx-request") == "true" or "text/html" in request.headers.get("accept", "")


# Under this top score the page says it is not sure. The shipped model's scores are calibrated: on the test set its
# answers scored 0.4-0.6 are right about half the time, those over 0.9 99 % of the time. A picture of something it
# was never taught (a face, a chair) still gets one of its labels, usually with a low score.
UNSURE_BELOW = 0.5


def percent(score: float) -> str:
    return f"{score * 100:.0f}"


def result_fragment(result: dict) -> str:
    label = escape(result["label"])
    items = " ".join(_topk_item(entry["label"], entry["score"]) for entry in result["top_k"])
    model = result["model"]
    return (
        f'<section class="result" data-label="{label}"> '
        f'<h2 class="result-label">{label}</h2> '
        f'<p class="result-score">{percent(result["score"])}% sure</p> '
        f"{_unsure_note(result['score'])}"
        f'<ol class="topk"> {items} </ol> '
        f'<p class="result-model">model {escape(model["name"])} {escape(model["version"])}</p></section>'
    )


def _unsure_note(score: float) -> str:
    if score >= UNSURE_BELOW:
        return ""
    return '<p class="result-unsure">Not sure: it may be something this model was never taught.</p> '


def _topk_item(label: str, score: float) -> str:
    label, pct = escape(label), percent(score)
    return (
        f'<li><span class="topk-label">{label}</span> '
        f'<progress class="topk-bar" max="100" value="{pct}" aria-label="{label} {pct}%"></progress> '
        f'<span class="topk-pct">{pct}%</span></li>'
    )


def error_fragment(code: str, detail: str) -> str:
    title = ERROR_TITLES.get(code, "The request failed")
    return (
        f'<div class="error" role="alert" data-error="{escape(code)}">'
        f"<strong>{escape(title)}</strong> <span>{escape(detail)}</span></div>"
    )
