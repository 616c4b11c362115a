"""Each product fact has one home in serve/ (formats: serve/formats.py; error codes, statuses and titles:
serve/error_codes.py; the body limit: serve/settings.py); these tests fail when another place states it differently:
the decoder, the API description, the fragments, the service's mapping of decoding errors, README.md and docs/."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import pytest
from PIL import Image

from contract.model_file import RESIZE_POLICIES
from serve import imaging
from serve.draining import cut_off
from serve.error_codes import FOR_HTTP_STATUS, ErrorCode
from serve.formats import ACCEPTED_FORMATS, PILLOW_FORMATS
from serve.fragments import error_fragment
from serve.openapi import openapi_spec
from serve.service import IMAGE_ERRORS
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


def test_every_code_is_answered_somewhere_and_has_a_title():
    """Each code of the enumeration is raised by a module of serve/ (by name), or is one of the codes
    serve.error_responses gives Starlette's statuses, or the decoding errors' (serve.service); each has a status and a
    title."""
    sources = "\n".join(path.read_text() for path in SERVE.glob("*.py") if path.name != "error_codes.py")
    mapped = set(FOR_HTTP_STATUS.values()) | set(IMAGE_ERRORS.values()) | {ErrorCode.HTTP_ERROR}
    for code in ErrorCode:
        assert code in mapped or f"ErrorCode.{code.name}" in sources, code
        assert 400 <= code.status < 600
        assert code.title
        assert code.meaning


def test_the_codes_and_titles_are_unique():
    assert len({code.value for code in ErrorCode}) == len({code.title for code in ErrorCode}) == len(ErrorCode)


def test_fragments_title_errors_from_the_table():
    for code in ErrorCode:
        assert f"<strong>{escape(code.title)}</strong>" in error_fragment(code.value, "detail")


def test_the_api_description_lists_each_code_where_it_is_met():
    spec = openapi_spec()
    for path, operations in spec["paths"].items():
        (op,) = operations.values()
        described = {
            status: set(re.findall(r"\(`([a-z_]+)`\)", response["description"]))
            for status, response in op["responses"].items()
        }
        for code in ErrorCode:
            if path in code.endpoints:
                assert code.value in described[str(code.status)], (path, code)
        named = set().union(*described.values())
        assert named == {code.value for code in ErrorCode if path in code.endpoints}, path


def test_the_shutdown_cut_off_has_a_code_of_its_own():
    assert cut_off().code is ErrorCode.SHUTTING_DOWN
    assert ErrorCode.SHUTTING_DOWN.title != ErrorCode.NOT_READY.title


def test_the_site_config_schema_follows_the_table():
    schema = openapi_spec()["components"]["schemas"]["SiteConfig"]
    assert schema["properties"]["errors"]["propertyNames"] == {"$ref": "#/components/schemas/ErrorCode"}
    assert openapi_spec()["components"]["schemas"]["ErrorCode"]["enum"] == sorted(code.value for code in ErrorCode)


def test_every_decoding_error_has_a_status():
    kinds = set(imaging.ImageRejected.__subclasses__())
    assert set(IMAGE_ERRORS) == kinds
    assert {code.status for code in IMAGE_ERRORS.values()} == {413, 415, 422}


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


def test_the_service_docs_name_every_module_of_serve():
    listed = (ROOT / "docs" / "serving.md").read_text().split("## Code and tests", 1)[1]
    modules = {str(path.relative_to(SERVE)) for path in SERVE.glob("**/*.py")} - {"__init__.py", "runtime/__init__.py"}
    assert {name for name in modules if f"`{name}`" not in listed} == set()
