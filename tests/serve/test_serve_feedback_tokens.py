"""Corrections nobody can forge, through the real app: the flood of forged feedback and the overwrite of genuine
corrections that the service used to accept (2,000 of 2,000, and 10 of 10) are refused now; a real answer's token
opens its feedback and nothing else; the FEEDBACK_KEY settings (set, unset locally, unset on Cloud Run, rotated);
the per-client rate limit and whom it counts as the client."""

from __future__ import annotations

import io
import json
import logging
import time

import numpy as np
import pytest
from PIL import Image

from contract import feedback_token as ft
from serve.rate_limit import RateLimiter, client_of
from serve.settings import Settings, SettingsError
from tests.serve.test_serve_feedback import png_base64
from tests.serve.test_serve_process import start_failure

KEY, OLD_KEY = "n" * 40, "o" * 40


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def post(client, body: dict, **headers):
    return client.post("/feedback", content=json.dumps(body), headers={"Content-Type": "application/json", **headers})


def classify(client, pixels: np.ndarray, request_id: str) -> dict:
    answer = client.post("/classify", content=png(pixels), headers={"X-Request-ID": request_id}).json()
    assert answer["request_id"] == request_id
    return answer


@pytest.fixture
def make_client(make_client, tmp_path):
    """The service with a prediction log: without one, feedback is refused (503), whatever its token."""
    made = []

    def make(**overrides):
        made.append(None)
        return make_client(**{"prediction_log": str(tmp_path / f"log-{len(made)}.jsonl"), **overrides})

    return make


@pytest.fixture
def pictures():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(10)]


def test_a_flood_of_forged_corrections_is_refused(make_client):
    """2,000 corrections for requests never answered, with made-up or missing tokens, from one client."""
    client = make_client(feedback_burst=10_000)  # the tokens alone, not the rate limit
    truck = png_base64(np.full((32, 32, 3), 90, dtype=np.uint8))
    statuses = set()
    for i in range(2000):
        body = {"request_id": f"forged-{i}", "label": "cat", "predicted": "truck", "share_thumbnail": True,
                "thumbnail": truck}  # fmt: skip
        if i % 2:
            body["token"] = f"eyJmYWtlIjp0cnVlfQ.{'A' * 43}"
        statuses.add(post(client, body).status_code)
    assert statuses == {400, 403}
    text = client.get("/metrics").text
    assert 'serve_feedback_total{verdict="wrong"} 0.0' in text


def test_genuine_corrections_cannot_be_overwritten_without_their_tokens(make_client, pictures):
    client = make_client(feedback_burst=10_000)
    answers = [classify(client, picture, f"genuine-{i}") for i, picture in enumerate(pictures)]
    for answer, picture in zip(answers, pictures, strict=True):
        body = {"request_id": answer["request_id"], "token": answer["feedback_token"], "label": "dog",
                "predicted": answer["label"], "share_thumbnail": True, "thumbnail": png_base64(picture)}  # fmt: skip
        assert post(client, body).status_code == 202
    attacker = np.zeros((32, 32, 3), dtype=np.uint8)
    for answer in answers:  # the ids are known to the attacker, the tokens are not
        body = {"request_id": answer["request_id"], "label": "cat", "predicted": answer["label"],
                "share_thumbnail": True, "thumbnail": png_base64(attacker)}  # fmt: skip
        assert post(client, body).status_code == 400
        assert post(client, body | {"token": answers[0]["feedback_token"]}).status_code in (403, 422)
        stolen = body | {"token": answer["feedback_token"]}  # even with the token: not the picture it vouches for
        assert post(client, stolen).status_code == 422


def test_a_token_opens_only_its_own_answers_feedback(make_client, pictures):
    client = make_client()
    answer = classify(client, pictures[0], "mine")
    other = classify(client, pictures[1], "theirs")
    body = {"request_id": "mine", "token": answer["feedback_token"], "label": "dog"}
    assert post(client, body).status_code == 202
    assert post(client, body | {"predicted": answer["label"]}).status_code == 202
    refusals = [
        body | {"token": other["feedback_token"]},  # another answer's
        body | {"request_id": "theirs-too"},  # another request id
        body | {"predicted": "truck" if answer["label"] != "truck" else "cat"},  # another label than was answered
        body | {"token": answer["feedback_token"][:-2] + "AA"},  # altered
    ]
    for refused in refusals:
        response = post(client, refused)
        assert response.status_code == 403, refused
        assert response.json()["error"] == "bad_token"


def test_an_answer_older_than_the_window_is_410(make_client):
    client = make_client(feedback_window_s=60)
    state = client.app.state.service
    old = ft.Answer("old", state.model.version, "cat", "0" * 32, issued=0)
    body = {"request_id": "old", "token": ft.mint(state.feedback_keys.keys[0], old), "label": "dog"}
    response = post(client, body)
    assert response.status_code == 410
    assert response.json()["error"] == "feedback_expired"


def test_feedback_key_settings():
    keys = Settings.from_env({"FEEDBACK_KEY": f"{KEY},{OLD_KEY}"}).feedback_keys
    assert keys == (KEY.encode(), OLD_KEY.encode())
    assert Settings.from_env({}).feedback_keys == ()
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({"FEEDBACK_KEY": "secret"})
    with pytest.raises(SettingsError, match="FEEDBACK_KEY is unset on Cloud Run"):
        Settings.from_env({"K_SERVICE": "cifar-serve"})
    assert Settings.from_env({"K_SERVICE": "cifar-serve", "FEEDBACK_KEY": KEY}).on_cloud_run


def test_unset_on_cloud_run_the_service_does_not_start(model_path):
    code, lines = start_failure(MODEL_PATH=str(model_path), K_SERVICE="cifar-serve", FEEDBACK_KEY="")
    assert code != 0
    assert len(lines) == 1
    assert lines[0].startswith("serve: FEEDBACK_KEY is unset on Cloud Run")


def test_unset_locally_a_random_key_per_start_said_once(make_client, caplog, pictures):
    with caplog.at_level(logging.WARNING, logger="serve"):
        first, second = make_client(), make_client()
    said = [record for record in caplog.records if "FEEDBACK_KEY is unset" in record.getMessage()]
    assert len(said) == 2  # once per start
    assert first.app.state.service.feedback_keys.keys != second.app.state.service.feedback_keys.keys
    answer = classify(first, pictures[0], "r")
    body = {"request_id": "r", "token": answer["feedback_token"], "label": "dog"}
    assert post(first, body).status_code == 202
    assert post(second, body).status_code == 403  # another process's key: what a shared key is for


def test_after_a_rotation_the_previous_key_is_accepted_until_it_is_dropped(make_client, pictures):
    before = make_client(feedback_keys=(OLD_KEY.encode(),))
    answer = classify(before, pictures[0], "r")
    body = {"request_id": "r", "token": answer["feedback_token"], "label": "dog"}
    rotated = make_client(feedback_keys=(KEY.encode(), OLD_KEY.encode()))
    assert post(rotated, body).status_code == 202
    new = classify(rotated, pictures[1], "s")
    signed_with_new = ft.check(new["feedback_token"], "s", (KEY.encode(),), now=time.time(), window_s=3600)
    assert isinstance(signed_with_new, ft.Answer)  # the first key signs
    dropped = make_client(feedback_keys=(KEY.encode(),))
    assert post(dropped, body).status_code == 403
    assert post(dropped, {"request_id": "s", "token": new["feedback_token"], "label": "dog"}).status_code == 202


def test_the_rate_limit_refuses_past_the_burst_and_says_when_to_retry(make_client, pictures):
    client = make_client(feedback_burst=3, feedback_per_minute=6)
    answer = classify(client, pictures[0], "r")
    body = {"request_id": "r", "token": answer["feedback_token"], "label": "dog"}
    assert [post(client, body).status_code for _ in range(3)] == [202, 202, 202]
    refused = post(client, body)
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_much_feedback"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10


def test_behind_cloud_runs_front_end_the_client_is_the_right_most_forwarded_address(make_client, pictures):
    client = make_client(feedback_burst=1, on_cloud_run=True, feedback_keys=(KEY.encode(),))
    answer = classify(client, pictures[0], "r")
    body = {"request_id": "r", "token": answer["feedback_token"], "label": "dog"}
    assert post(client, body, **{"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}).status_code == 202
    # The same client claiming another address on the left is still the same client; another client is not.
    assert post(client, body, **{"X-Forwarded-For": "9.9.9.9, 203.0.113.7"}).status_code == 429
    assert post(client, body, **{"X-Forwarded-For": "1.1.1.1, 203.0.113.8"}).status_code == 202
    local = make_client(feedback_burst=1)
    assert post(local, body | {"token": "x.y"}, **{"X-Forwarded-For": "1.1.1.1"}).status_code == 403
    assert post(local, body, **{"X-Forwarded-For": "2.2.2.2"}).status_code == 429  # off Cloud Run: the peer


def test_the_limiter_refills_and_its_memory_is_bounded():
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=100)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.take("a", now=1.0) == 0.0  # one token back after a second
    for i in range(1000):
        limiter.take(f"client-{i}", now=2.0)
    assert len(limiter) == 100


def test_client_of_reads_the_header_only_behind_the_front_end():
    from starlette.requests import Request

    scope = {"type": "http", "headers": [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.1 ")], "client": ("10.0.0.1", 9)}
    assert client_of(Request(scope), behind_front_end=True) == "198.51.100.1"
    assert client_of(Request(scope), behind_front_end=False) == "10.0.0.1"
    assert client_of(Request({**scope, "headers": []}), behind_front_end=True) == "10.0.0.1"
