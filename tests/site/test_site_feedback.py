"""From a person's correction to training data, in real Chromium against the real service and site: under the answer
the page shows what the model saw and asks "Is this right?"; a person says "No, it's a cat" and shares the
thumbnail; the service's prediction log then holds that feedback line with the thumbnail; `python -m monitor harvest`
turns it into an image-folder dataset; and a short training run takes it into its training split."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def upload(session, picture) -> None:
    session.page.set_input_files(
        "#file", files=[{"name": picture.name, "mimeType": picture.mime, "buffer": picture.data}]
    )


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_line(path: Path, match, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in log_lines(path) if match(line)]
        if found:
            return found[-1]
        time.sleep(0.1)
    pytest.fail(f"no such line in {path}:\n" + "\n".join(json.dumps(line)[:300] for line in log_lines(path)[-5:]))


def classify(session, service, picture) -> tuple[str, str]:
    """Upload, wait for the answer; (its label, its request id)."""
    page = session.page
    with page.expect_response(lambda r: r.url == f"{service.url}/classify") as response:
        upload(session, picture)
    assert response.value.status == 200
    result = page.locator("#result .result")
    result.wait_for(state="visible")
    return result.get_attribute("data-label"), response.value.headers["x-request-id"]


def test_what_the_model_saw_is_shown_beside_the_answer(site, service, open_page, picture):
    session = open_page(site.url)
    page = session.page
    classify(session, service, picture)
    thumbnail = page.locator("#result .result-thumbnail")
    expect(thumbnail).to_be_visible()
    natural = page.evaluate("(img) => [img.naturalWidth, img.naturalHeight]", thumbnail.element_handle())
    assert natural == [32, 32]  # exactly the model's input
    box = thumbnail.bounding_box()
    assert box["width"] >= 64  # enlarged
    assert thumbnail.evaluate("(img) => getComputedStyle(img).imageRendering") == "pixelated"
    label_box = page.locator("#result .result-label").bounding_box()
    assert box["x"] > label_box["x"] + 50  # beside the answer, not under it
    assert thumbnail.get_attribute("alt")
    # the question: a fieldset with its legend, buttons, a labelled list, and sharing off unless ticked
    form = page.locator("#result form.feedback")
    expect(form.locator("fieldset > legend")).to_have_text("Is this right?")
    expect(form.get_by_role("button", name="Yes")).to_be_visible()
    expect(form.get_by_label("No, it’s a")).to_be_visible()
    consent = form.get_by_role("checkbox")
    expect(consent).not_to_be_checked()
    session.done("feedback-01-question")


def test_sending_without_choosing_says_what_to_do(site, service, open_page, picture):
    session = open_page(site.url)
    page = session.page
    classify(session, service, picture)
    page.locator("#result form.feedback").get_by_role("button", name="Send").click()
    alert = page.locator("#result .feedback-status [role=alert]")
    expect(alert).to_contain_text("none of these")
    assert page.evaluate("document.activeElement.name") == "label"  # focus on the list to choose from
    session.done()


def test_yes_by_keyboard_is_thanked(site, service, open_page, picture, prediction_log):
    session = open_page(site.url)
    page = session.page
    label, request_id = classify(session, service, picture)
    page.locator("#result form.feedback").get_by_role("button", name="Yes").focus()
    with page.expect_response(lambda r: r.url == f"{service.url}/feedback") as response:
        page.keyboard.press("Enter")
    assert response.value.status == 202
    status = page.locator("#result .feedback-status")
    expect(status).to_contain_text("Thank you")
    assert page.evaluate("document.activeElement.classList.contains('feedback-status')")
    line = wait_for_line(prediction_log, lambda x: x["kind"] == "feedback" and x["request_id"] == request_id)
    assert (line["verdict"], line["label"], line["share_thumbnail"]) == ("right", label, False)
    assert "thumbnail" not in line
    session.done()


def test_a_correction_with_consent_becomes_training_data(
    site, service, open_page, picture, prediction_log, tmp_path, processed_dir
):
    session = open_page(site.url)
    page = session.page
    predicted, request_id = classify(session, service, picture)
    correction = "cat" if predicted != "cat" else "dog"
    shown = page.locator("#result .result-thumbnail").get_attribute("src")

    form = page.locator("#result form.feedback")
    form.get_by_label("No, it’s a").select_option(correction)
    form.get_by_role("checkbox").check()
    with page.expect_response(lambda r: r.url == f"{service.url}/feedback") as response:
        form.get_by_role("button", name="Send").click()
    assert response.value.status == 202
    sent = json.loads(response.value.request.post_data)
    assert sent["request_id"] == request_id
    assert sent["token"]  # the answer's feedback_token, from the fragment
    assert (sent["label"], sent["predicted"], sent["share_thumbnail"]) == (correction, predicted, True)
    expect(page.locator("#result .feedback-status")).to_contain_text("picture the model saw")
    session.done("feedback-02-thanks")

    # the service's log: the prediction, then the feedback with the thumbnail the page showed
    wait_for_line(prediction_log, lambda x: x["kind"] == "prediction" and x["request_id"] == request_id)
    line = wait_for_line(prediction_log, lambda x: x["kind"] == "feedback" and x["request_id"] == request_id)
    assert (line["verdict"], line["label"], line["predicted"]) == ("wrong", correction, predicted)
    assert line["share_thumbnail"] is True
    thumbnail = decode_png(line["thumbnail"])
    np.testing.assert_array_equal(thumbnail, decode_png(shown.split(",", 1)[1]))

    # harvest finds it (its answer and token check out), a person approves it, and it is in the dataset
    dataset, review = tmp_path / "feedback", tmp_path / "feedback-review"
    for command in (["harvest", str(prediction_log)], ["approve"]):
        done = subprocess.run(
            [sys.executable, "-m", "monitor", *command, "--review", str(review), "--out", str(dataset)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        if command[0] == "harvest":
            assert '"kept": 1' in done.stdout, done.stdout
    harvested = dataset / correction / f"{request_id}.png"
    assert harvested.is_file(), done.stdout
    np.testing.assert_array_equal(decode_png(base64.b64encode(harvested.read_bytes()).decode()), thumbnail)
    assert json.loads((dataset / "manifest.json").read_text())["items"][request_id]["label"] == correction

    # a short training run takes it into its training split (never validation or test)
    train_with_feedback(processed_dir, tmp_path, dataset, thumbnail, correction)


def decode_png(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        assert image.size == (32, 32)
        return np.asarray(image.convert("RGB"))


def train_with_feedback(processed_dir: Path, tmp_path: Path, dataset: Path, thumbnail, correction: str) -> None:
    from hydra.utils import instantiate

    from tests.train.conftest import fast_overrides, task_config
    from train.train import train

    overrides = [*fast_overrides(processed_dir, tmp_path / "run"), "model=mlp", "+trainer.limit_train_batches=3"]
    plain = instantiate(task_config(overrides).data)
    plain.setup("fit")
    cfg = task_config([*overrides, f"data.feedback_dir={dataset}"])
    data = instantiate(cfg.data)
    data.setup("fit")
    train_images = data.datasets["train"].images.numpy()
    assert len(train_images) == len(plain.datasets["train"]) + len(list(dataset.glob("*/*.png")))
    assert len(data.datasets["val"]) == len(plain.datasets["val"])  # the validation split is untouched
    matches = np.flatnonzero((train_images == thumbnail).all(axis=(1, 2, 3)))
    assert len(matches) > 0
    assert int(data.datasets["train"].labels[matches[-1]]) == data.classes.index(correction)
    train(cfg)
    assert (tmp_path / "run" / "ckpt" / "mlp" / "last.ckpt").is_file()
