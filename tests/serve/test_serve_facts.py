"""Each product fact has one home in serve/ (formats: serve/formats.py; error codes and titles: serve/error_codes.py;
the body limit: serve/settings.py); these tests fail when another place states it differently: the decoder, the
API description, the fragments, the route's mapping of decoding errors, README.md and docs/."""

from __future__ import annotations

import ast
import re
from html import escape
from pathlib import Path

import pytest
from PIL import Image

from contract.model_file import RESIZE_POLICIES
from serve import imaging
from serve.error_codes import ERROR_TITLES
from serve.errors import HTTP_CODES
from serve.formats import ACCEPTED_FORMATS, PILLOW_FORMATS
from serve.fragments import error_fragment
from serve.openapi import openapi_spec
from serve.routes import IMAGE_ERRORS
from serve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "serve"
NAMES = [fmt.name for fmt in ACCEPTED_FORMATS]


# --- formats ------------------------------------------------------------------------------------------------


def test_the_decoder_opens_exactly_the_tables_formats():
    assert imaging.FORMATS == PILLOW_FORMATS
    assert len(set(NAMES)) == len(NAMES) == len(set(PILLOW_FORMATS))


@pytest.mark.parametrize("fmt", ACCEPTED_FORMATS, ids=lambda fmt: fmt.name)
def test_what_the_picker_offers_is_what_pillow_opens_as_that_format(fmt):
    Image.init()
    assert fmt.media_type == Image.MIME[fmt.pillow]
    registered = Image.registered_extensions()
    for extension in fmt.extensions:
        assert extension == extension.lower()
        assert extension.startswith(".")
        assert registered[extension] == fmt.pillow


def test_the_api_description_lists_the_tables_formats():
    description = openapi_spec()["paths"]["/classify"]["post"]["description"]
    listed = re.search(r"detected from the bytes: ([^)]*)\)", description)
    assert listed is not None
    assert listed[1].split(", ") == NAMES


def test_the_not_an_image_detail_lists_the_decoders_formats():
    with pytest.raises(imaging.NotAnImage) as error:
        imaging.open_image(b"plain text, no picture", max_pixels=10**6)
    assert str(error.value).endswith(", ".join(PILLOW_FORMATS))


def test_the_resize_policies_are_the_contracts():
    assert set(imaging.RESIZE_POLICIES) == set(RESIZE_POLICIES)


# --- error codes and titles ---------------------------------------------------------------------------------


def _serve_sources() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text()) for path in sorted(SERVE.glob("*.py"))}


def codes_raised(files: tuple[str, ...] | None = None) -> set[str]:
    """Every code serve/ can answer: ApiError(status, "code", ...) literals, Starlette's statuses named in
    serve.errors, its fallback code, and the route's codes for decoding errors. With `files`: the literals in those
    files of serve/ only."""
    codes = set(HTTP_CODES.values()) | {code for _, code in IMAGE_ERRORS.values()} if files is None else set()
    for name, tree in _serve_sources().items():
        if files is not None and name not in files:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or len(node.args) < 2 or not isinstance(node.args[1], ast.Constant):
                continue  # a code in a variable is serve.errors' for a Starlette status: HTTP_CODES has it
            if ast.unparse(node.func) in ("ApiError", "HTTP_CODES.get"):  # HTTP_CODES.get(status, fallback code)
                codes.add(node.args[1].value)
    return codes


def test_every_code_the_service_answers_has_a_title_and_every_title_a_code():
    assert codes_raised() == set(ERROR_TITLES)


def test_fragments_title_errors_from_the_table():
    for code, title in ERROR_TITLES.items():
        assert f"<strong>{escape(title)}</strong>" in error_fragment(code, "detail")


def test_the_api_description_names_only_codes_of_the_table():
    spec = openapi_spec()
    named = set()
    for operations in spec["paths"].values():
        for op in operations.values():
            for response in op["responses"].values():
                named |= set(re.findall(r"`([a-z_]+)`", response["description"]))
    named -= {"file"}  # the form field, not a code
    assert named <= set(ERROR_TITLES)
    classify = spec["paths"]["/classify"]["post"]["responses"]
    described = " ".join(response["description"] for response in classify.values())
    # every code an upload can meet is described at /classify; the codes only feedback meets, at /feedback
    feedback_only = codes_raised(("feedback.py", "thumbnails.py")) - codes_raised(("routes.py", "uploads.py"))
    assert feedback_only >= {"not_json", "bad_feedback", "bad_request_id", "unknown_label", "bad_thumbnail"}
    upload_codes = codes_raised() - {"not_found", "http_error", "internal_error"} - feedback_only
    assert {code for code in upload_codes if f"`{code}`" not in described} == set()
    feedback = spec["paths"]["/feedback"]["post"]["responses"]
    described = " ".join(response["description"] for response in feedback.values())
    feedback_codes = feedback_only | {"body_too_large", "body_timeout", "bad_request", "not_ready", "overloaded"}
    assert {code for code in feedback_codes if f"`{code}`" not in described} == set()


def test_the_site_config_schema_follows_the_table():
    schema = openapi_spec()["components"]["schemas"]["SiteConfig"]
    assert schema["properties"]["errors"]["propertyNames"]["enum"] == list(ERROR_TITLES)


def test_every_decoding_error_has_a_status():
    kinds = set(imaging.ImageRejected.__subclasses__())
    assert set(IMAGE_ERRORS) == kinds
    assert {status for status, _ in IMAGE_ERRORS.values()} == {413, 415, 422}


# --- what the documentation states ------------------------------------------------------------------------


def documents() -> list[Path]:
    return [path for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))] if path.is_file()]


def test_a_document_listing_formats_lists_all_of_them():
    """A line that names most of the formats is a list of them: it must name every one."""
    for path in documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            named = [name for name in NAMES if re.search(rf"\b{name}\b", line)]
            if len(named) >= 4:
                assert named == NAMES, f"{path.relative_to(ROOT)}:{number} lists {named}, serve reads {NAMES}"


def test_a_document_stating_the_body_limit_states_the_default():
    default = Settings().max_body_bytes
    for path in documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("| `MAX_BODY_BYTES`"):  # the settings table: | name | default | meaning |
                stated = line.split("|")[2]
                assert re.findall(r"`(\d+)`", stated) == [str(default)], f"{path.relative_to(ROOT)}:{number}"
