"""train.secret_env: NAME from the Secret Manager version NAME_SECRET names, read with the metadata server's token.

No network: urlopen is replaced by a stand-in that answers as the two Google endpoints do.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.error

import pytest

from train import secret_env

VERSION = "projects/p/secrets/wandb-api-key/versions/latest"


def test_each_name_secret_becomes_name_and_nothing_else_is_touched():
    asked = []
    environ = {"WANDB_API_KEY_SECRET": VERSION, "PATH": "/bin", "NOT_A_SECRET": "plain", "OTHER_SECRET": "hunter2"}
    env = secret_env.secret_environment(environ, access=lambda name: asked.append(name) or "key-value")
    assert asked == [VERSION]  # OTHER_SECRET's value names no secret version: left as it is
    assert env == {**environ, "WANDB_API_KEY": "key-value"}


def test_a_name_already_set_wins_and_no_secret_is_read():
    environ = {"WANDB_API_KEY_SECRET": VERSION, "WANDB_API_KEY": "from-the-caller"}
    env = secret_env.secret_environment(environ, access=lambda name: pytest.fail("read a secret"))
    assert env["WANDB_API_KEY"] == "from-the-caller"


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_secret_is_read_with_the_metadata_servers_token(monkeypatch):
    requests = []

    def urlopen(request, timeout):
        requests.append((request.full_url, dict(request.header_items()), timeout))
        if "metadata.google.internal" in request.full_url:
            return FakeResponse(json.dumps({"access_token": "tok", "expires_in": 3599}).encode())
        payload = {"name": VERSION, "payload": {"data": base64.b64encode(b"s3cret").decode()}}
        return FakeResponse(json.dumps(payload).encode())

    monkeypatch.setattr(secret_env.urllib.request, "urlopen", urlopen)
    assert secret_env.access_secret(VERSION) == "s3cret"
    (token_url, token_headers, t1), (access_url, access_headers, t2) = requests
    assert token_url == secret_env.TOKEN_URL
    assert token_headers == {"Metadata-flavor": "Google"}  # the metadata server answers only with this header
    assert access_url == f"https://secretmanager.googleapis.com/v1/{VERSION}:access"
    assert access_headers == {"Authorization": "Bearer tok"}
    assert t1 == t2 == secret_env.TIMEOUT_S  # never waits on the network without a bound


def test_an_unreadable_secret_fails_the_command_with_its_name_and_runs_nothing(monkeypatch, capsys):
    def urlopen(request, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(secret_env.urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("WANDB_API_KEY_SECRET", VERSION)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(secret_env.os, "execvpe", lambda *a: pytest.fail("ran the command"))
    assert secret_env.main(["true"]) == 1
    assert VERSION in capsys.readouterr().err


def test_the_command_replaces_the_process_with_the_secret_in_its_environment(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY_SECRET", VERSION)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(secret_env, "access_secret", lambda name: "key-value")
    ran = []
    monkeypatch.setattr(secret_env.os, "execvpe", lambda file, args, env: ran.append((file, args, env)))
    secret_env.main([sys.executable, "-c", "pass"])
    ((file, args, env),) = ran
    assert (file, args) == (sys.executable, [sys.executable, "-c", "pass"])
    assert env["WANDB_API_KEY"] == "key-value"


def test_no_command_is_a_usage_error():
    assert secret_env.main([]) == 2
