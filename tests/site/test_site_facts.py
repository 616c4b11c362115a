"""The page states no product fact of its own: what it shows before the service answers GET /site-config (its copy in
index.html, the file input's accept list, the hint under it) is the service's answer at its default settings, and
app.js spells none of the service's facts. The browser tests check that the page shows the live answer."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest

from serve.error_codes import titles
from serve.formats import ACCEPTED_FORMATS
from serve.settings import Settings
from serve.site_config import TOP1, TOP1_FP32, TOP1_INT8, site_config

SITE = Path(__file__).resolve().parents[2] / "site"
APP_JS = (SITE / "app.js").read_text()


class Page(HTMLParser):
    """The bits of index.html that state the service's facts, by element id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str] = []  # ids of the elements we are inside
        self._stack: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element_id = dict(attrs).get("id")
        if element_id:
            self.attrs[element_id] = dict(attrs)
            self.text[element_id] = ""
            self._open.append(element_id)
        if tag not in ("input", "img", "meta", "link", "br", "path"):
            self._stack.append(element_id)

    def handle_endtag(self, tag):
        if tag in ("input", "img", "meta", "link", "br", "path") or not self._stack:
            return
        if self._stack.pop():
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            self.text[element_id] += data


@pytest.fixture(scope="module")
def page() -> Page:
    return Page((SITE / "index.html").read_text())


@pytest.fixture(scope="module")
def service() -> dict:
    """What GET /site-config answers at the default settings (tests/serve checks the route answers this)."""
    return msgspec.to_builtins(site_config(Settings(), model=None))


def words(text: str) -> str:
    return " ".join(text.split())


def in_words(names: list[str]) -> str:
    """app.js's listInWords."""
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def format_bytes(n: int) -> str:
    """app.js's formatBytes."""
    mib = 1024 * 1024
    if n >= mib:
        return f"{n / mib:.{0 if n >= 10 * mib else 1}f} MB"
    return f"{round(n / 1024)} KB" if n >= 1024 else f"{n} bytes"


def test_the_pages_copy_is_the_services_answer(page, service):
    copy = json.loads(page.text["service-facts"])
    assert page.attrs["service-facts"]["type"] == "application/json"  # data, never run (the CSP allows no inline)
    assert copy == {key: value for key, value in service.items() if key != "headline_metric"}


def test_the_file_input_accepts_the_services_formats(page, service):
    expected = ",".join(",".join([f["media_type"], *f["extensions"]]) for f in service["formats"])
    assert page.attrs["file"]["accept"] == expected
    assert "image/jpeg" in expected  # still accepts pictures when the service is down
    assert ".jpg" in expected


def test_the_hint_names_the_services_formats_and_limit(page, service):
    assert words(page.text["accepted-formats"]) == in_words([f["name"] for f in service["formats"]])
    assert words(page.text["max-size"]) == format_bytes(service["max_body_bytes"]) == "10 MB"
    assert "JPEG, PNG, WebP, AVIF, GIF, BMP or TIFF, up to 10 MB." in words(page.text["file-hint"])


def page_error_codes() -> set[str]:
    block = re.search(r"var PAGE_ERROR_TITLES = \{(.*?)\};", APP_JS, re.S)
    assert block is not None
    return set(re.findall(r"^\s*(\w+):", block[1], re.M))


def test_the_page_titles_only_the_errors_the_service_cannot():
    page_codes = page_error_codes()
    assert page_codes == {"no_htmx", "unreachable", "timeout"}
    assert page_codes.isdisjoint(titles())
    shown = set(re.findall(r"showError\('(\w+)'", APP_JS))
    assert shown
    assert shown <= set(titles()) | page_codes
    # every error is titled through showError but the catch-all for a status nothing names (`http_` + status)
    assert re.findall(r"renderError\('(\w+)'", APP_JS) == ["http_"]


def test_app_js_spells_none_of_the_services_facts():
    for title in titles().values():
        assert title not in APP_JS
    for fmt in ACCEPTED_FORMATS:
        assert not re.search(rf"\b{fmt.name}\b|{re.escape(fmt.media_type)}", APP_JS), fmt.name
    for metric in (TOP1, TOP1_FP32, TOP1_INT8):
        assert metric not in APP_JS
    assert "10485760" not in APP_JS
    # settings of the page that nothing writes (config.js holds the API URL only)
    assert "maxUploadBytes" not in APP_JS
    assert "timeoutMs" not in APP_JS
