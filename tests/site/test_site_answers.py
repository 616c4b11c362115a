"""What the page says about its answers, in real Chromium against the real service and the shipped model, at desktop
and phone width: an example clicked is classified; a picture of none of the ten reads so, with the best guess beneath;
"Why?" shows where the model looked; and axe-core (the accessibility checker, .tools/npm) finds nothing on the page
with an answer and its heatmap. Screenshots: artifacts/site/*.png."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = ROOT / ".tools" / "npm" / "node_modules" / "axe-core" / "axe.min.js"  # tools/setup-linters.sh installs it
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "is_mobile": True, "has_touch": True}}


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.x A/AA rules on the page as it is now: one line per violation."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))"
    )
    return list(found)


@pytest.mark.parametrize("size", list(SIZES))
def test_an_example_clicked_is_classified(site, service, open_page, model_labels, size):
    session = open_page(site.url, **SIZES[size])
    page = session.page
    examples = page.locator("button.example")
    assert examples.count() == 6
    for i in range(examples.count()):  # every example has words for a screen reader
        assert examples.nth(i).locator("img").get_attribute("alt")
    expect(page.locator(".examples-credits")).to_contain_text("CC0")
    with page.expect_response(lambda r: r.url == f"{service.url}/classify") as response:
        examples.first.click()
    assert response.value.status == 200
    result = page.locator("#result .result")
    result.wait_for(state="visible")
    assert result.get_attribute("data-label") == "airplane"  # CIFAR-10 test picture 0, an airplane
    expect(page.locator("#result .result-label")).to_have_text("airplane")
    session.done(f"10-example-{size}")


def flat_picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "PNG")  # one flat colour: none of the ten things
    return out.getvalue()


@pytest.mark.parametrize("size", list(SIZES))
def test_a_picture_of_none_of_the_ten_reads_so_with_the_best_guess_beneath(site, service, open_page, size):
    session = open_page(site.url, **SIZES[size])
    page = session.page
    page.set_input_files("#file", files=[{"name": "flat.png", "mimeType": "image/png", "buffer": flat_picture()}])
    result = page.locator("#result .result")
    result.wait_for(state="visible")
    assert result.get_attribute("data-outlier") == "true"
    expect(page.locator("#result .result-outlier")).to_have_text("This doesn’t look like any of the ten things I know")
    expect(page.locator("#result .result-guess")).to_contain_text("Best guess: ")
    expect(page.locator("#result form.feedback")).to_contain_text("none of these")  # the feedback stays
    session.done(f"11-outlier-{size}")


@pytest.mark.parametrize("size", list(SIZES))
def test_why_shows_where_it_looked_and_axe_finds_nothing(site, service, open_page, picture, size):
    session = open_page(site.url, **SIZES[size], bypass_csp=True)  # only to inject axe-core; the page has its CSP
    page = session.page
    page.set_input_files("#file", files=[{"name": picture.name, "mimeType": picture.mime, "buffer": picture.data}])
    page.locator("#result .result").wait_for(state="visible")
    label = page.locator("#result .result").get_attribute("data-label")
    assert page.locator("#result .result-heatmap").count() == 0  # the plain answer has none
    with page.expect_response(lambda r: r.url == f"{service.url}/classify?explain=1") as response:
        page.get_by_role("button", name="Why?").click()
    assert response.value.status == 200
    heatmap = page.locator("#result .result-heatmap")
    expect(heatmap).to_be_visible()
    assert label in heatmap.get_attribute("alt")
    expect(page.locator("#result .result-why figcaption")).to_contain_text(f"Where it looked for “{label}”")
    assert axe_violations(page) == []
    session.done(f"12-why-{size}")


def test_the_examples_and_their_credits_are_the_sites_files():
    listed = sorted(path.name for path in (ROOT / "site" / "examples").iterdir())
    html = (ROOT / "site" / "index.html").read_text()
    for name in listed:
        assert f'data-src="examples/{name}"' in html, name
