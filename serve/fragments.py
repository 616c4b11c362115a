"""HTML fragments for the htmx page. The class names and data attributes are the site's styling hooks."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from starlette.requests import Request

from contract.prediction_log import NONE_OF_THESE, NOT_SURE_BELOW
from serve.error_codes import error_title
from serve.schemas import Answer


def wants_html(request: Request) -> bool:
    """htmx sends HX-Request: true; a browser form post asks for text/html."""
    return request.headers.get("hx-request") == "true" or "text/html" in request.headers.get("accept", "")


# Under NOT_SURE_BELOW the page says it is not sure. The shipped model's scores are calibrated probabilities
# (export/calibration.py; its error in the model card and docs/trust.md), so an answer shown 40 % sure is right about
# 40 % of the time. A picture of something it was never taught (a face, a chair) still gets one of its labels, often
# with a high score: the outlier flag (`outlier`), not the score, says when it is none of the ten.


def percent(score: float) -> str:
    return f"{score * 100:.0f}"


def result_fragment(
    answer: Answer, *, labels: Sequence[str] = (), thumbnail: str | None = None, explainable: bool = False
) -> str:
    """The answer; with `thumbnail` (base64 PNG of the model's input) the picture as the model saw it, and with
    `labels` (the model's) the question whether it is right (the page posts the reply to /feedback). An outlier reads
    as none of the ten, its label only the best guess beneath. `explainable` (the model has a class activation map)
    offers "Why?", which the page asks for with ?explain=1; the answer's `explanation`, when there, is shown."""
    items = " ".join(_topk_item(entry.label, entry.score) for entry in answer.top_k)
    model = answer.model
    return (
        f'<section class="result" data-label="{escape(answer.label)}"{_outlier_data(answer)}> '
        f"{_headline(answer)}"
        f'<ol class="topk"> {items} </ol> '
        f"{_seen(thumbnail)}"
        f"{_why(answer, explainable)}"
        f"{_feedback_form(answer, labels, thumbnail is not None)}"
        f'<p class="result-model">model {escape(model.name)} {escape(model.version)}</p></section>'
    )


def _headline(answer: Answer) -> str:
    label, sure = escape(answer.label), percent(answer.score)
    if answer.outlier:
        return (
            '<h2 class="result-label result-outlier">This doesn’t look like any of the ten things I know</h2> '
            f'<p class="result-guess">Best guess: {label}, {sure}% sure</p> '
        )
    unsure = _unsure_note(answer.score)
    return f'<h2 class="result-label">{label}</h2> <p class="result-score">{sure}% sure</p> {unsure}'


def _why(answer: Answer, explainable: bool) -> str:
    """The heatmap of an explained answer, or the button that asks for it."""
    explanation = answer.explanation or None  # UNSET (not asked for) and None (no map) alike
    if explanation:
        label = escape(explanation.label)
        return (
            '<figure class="result-why"><img class="result-heatmap" '
            f'src="data:image/png;base64,{escape(explanation.heatmap)}" alt="Where the model looked for {label}: '
            f'the warmer a region, the more it counted"> <figcaption>Where it looked for “{label}”: the warmer, '
            "the more it counted</figcaption></figure> "
        )
    if not explainable:
        return ""
    return '<p class="result-why-ask"><button type="button" class="button result-why-button">Why?</button></p> '


def _outlier_data(answer: Answer) -> str:
    """The outlier flag and score as data attributes (absent when the model has no outlier score)."""
    if answer.outlier is None:
        return ""
    flag = "true" if answer.outlier else "false"
    return f' data-outlier="{flag}" data-outlier-score="{answer.outlier_score:.4f}"'


def _seen(thumbnail: str | None) -> str:
    if thumbnail is None:
        return ""
    return (
        f'<figure class="result-seen"><img class="result-thumbnail" src="data:image/png;base64,{escape(thumbnail)}" '
        'alt="Your picture as the model saw it"> <figcaption>What the model saw</figcaption></figure> '
    )


def _feedback_form(answer: Answer, labels: Sequence[str], with_thumbnail: bool) -> str:
    """Yes, or "No, it's a ..." (the model's other labels, or none of these), and consent to share the thumbnail:
    off unless the person ticks it."""
    if not labels:
        return ""
    options = "".join(
        f'<option value="{escape(name)}">{escape(name)}</option>' for name in labels if name != answer.label
    )
    consent = (
        '<label class="feedback-consent"><input type="checkbox" name="share_thumbnail"> '
        "Share the picture the model saw (32×32 pixels) to help train it</label>"
        if with_thumbnail
        else ""
    )
    return (
        f'<form class="feedback" data-request-id="{escape(answer.request_id)}" '
        f'data-token="{escape(answer.feedback_token)}" '
        f'data-predicted="{escape(answer.label)}"><fieldset><legend>Is this right?</legend> '
        '<div class="feedback-choices"><button type="submit" class="button feedback-yes" value="right">Yes</button> '
        '<span class="feedback-no"><label for="feedback-label">No, it’s a</label> '
        '<select id="feedback-label" name="label"><option value="">choose…</option>'
        f'{options}<option value="{NONE_OF_THESE}">none of these</option></select> '
        '<button type="submit" class="button feedback-send" value="wrong">Send</button></span></div> '
        f"{consent}</fieldset>"
        '<p class="feedback-status" role="status" aria-live="polite"></p></form> '
    )


def _unsure_note(score: float) -> str:
    if score >= NOT_SURE_BELOW:
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
    title = error_title(code)
    return (
        f'<div class="error" role="alert" data-error="{escape(code)}">'
        f"<strong>{escape(title)}</strong> <span>{escape(detail)}</span></div>"
    )
