"""The internals serve/runtime/ leans on are still there, as it uses them: each test fails when one changes (or when a
package moves off the pin it was checked at), so an upgrade of uvicorn, httptools or Python cannot break a seam
silently. The behaviour itself is tested elsewhere (test_serve_server_limits.py, test_serve_spinning.py)."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from uvicorn.protocols.http import httptools_impl

from serve.runtime import event_loop, http_protocol

ROOT = Path(__file__).resolve().parents[2]
PINS = dict(re.findall(r"^([a-z][a-z0-9-]*)==(\S+)", (ROOT / "requirements-serve.txt").read_text(), re.M))


@pytest.mark.parametrize("package", ["uvicorn", "httptools"])
def test_the_http_stack_is_the_pinned_one(package):
    assert version(package) == PINS[package], f"re-check serve/runtime/http_protocol.py against {package}"


def test_uvicorns_httptools_protocol_has_what_the_head_limits_override_and_read():
    protocol = httptools_impl.HttpToolsProtocol
    overridden = [
        "connection_made", "connection_lost", "data_received", "on_message_begin", "on_url", "on_header",
        "on_headers_complete", "on_message_complete", "on_response_complete", "_unsupported_upgrade_warning",
    ]  # fmt: skip
    for name in overridden:
        assert callable(getattr(protocol, name, None)), name
        assert name in http_protocol.LimitedHttpToolsProtocol.__dict__, name
    assert list(inspect.signature(protocol._unsupported_upgrade_warning).parameters) == ["self"]
    assert list(inspect.signature(protocol.on_header).parameters) == ["self", "name", "value"]
    source = inspect.getsource(protocol)
    for attribute in ("self.parser", "self.cycle", "self.pipeline", "self.flow", "self.server_state"):
        assert attribute in source, attribute
    assert httptools_impl.STATUS_LINE[431].startswith(b"HTTP/1.1 431")
    # uvicorn calls the warning where the calm protocol must stay silent: on an upgrade it cannot serve.
    assert "self._unsupported_upgrade_warning()" in source


def test_the_python_is_the_one_the_event_loop_was_checked_at():
    assert sys.version_info[:2] == (3, 11), "re-check serve/runtime/event_loop.py against this Python's asyncio"


def test_asyncios_accept_loop_has_the_private_methods_the_calm_loop_overrides():
    base = asyncio.selector_events.BaseSelectorEventLoop
    accept = list(inspect.signature(base._accept_connection).parameters)
    serving = list(inspect.signature(base._start_serving).parameters)
    assert accept[:3] == ["self", "protocol_factory", "sock"]
    assert serving[:3] == ["self", "protocol_factory", "sock"]
    # The round of accept() calls the calm loop ends early, and the retry it schedules through _start_serving.
    source = inspect.getsource(base._accept_connection)
    assert "sock.accept()" in source
    assert "_start_serving" in source
    assert "socket.accept() out of system resource" in source
    assert event_loop.ACCEPT_FAILED == "socket.accept() out of system resource"
    for name in ("_accept_connection", "_start_serving"):
        assert name in event_loop.CalmSelectorEventLoop.__dict__, name
