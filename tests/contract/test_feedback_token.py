"""Feedback tokens (contract/feedback_token.py): only the key's holder makes one, for one answer, for one window."""

from __future__ import annotations

import numpy as np
import pytest

from contract import feedback_token as ft

KEY, OLD_KEY = b"k" * 32, b"o" * 32
ANSWER = ft.Answer("req-1", "b157d1f11c26", "cat", "0" * ft.DIGEST_CHARS, issued=1_000_000)


def check(token, request_id="req-1", keys=(KEY,), now=1_000_010.0, window_s=3600.0):
    return ft.check(token, request_id, keys, now=now, window_s=window_s)


def test_a_minted_token_checks_out_as_its_answer():
    assert check(ft.mint(KEY, ANSWER)) == ANSWER


def test_any_change_to_what_it_vouches_for_is_a_forgery():
    token = ft.mint(KEY, ANSWER)
    assert check(token, request_id="req-2") == ft.FORGED
    for changed in ({"label": "dog"}, {"model_version": "other"}, {"input_digest": "1" * 32}, {"issued": 1_000_001}):
        forged_payload = ft.mint(b"x" * 32, ft.Answer(**{**ANSWER.__dict__, **changed})).split(".")[0]
        assert check(f"{forged_payload}.{token.split('.')[1]}") == ft.FORGED, changed
    assert check(ft.mint(b"another key of 32 characters....", ANSWER)) == ft.FORGED


def test_a_token_outside_its_window_has_expired():
    token = ft.mint(KEY, ANSWER)
    assert check(token, now=ANSWER.issued + 3600) == ANSWER
    assert check(token, now=ANSWER.issued + 3601) == ft.EXPIRED
    assert check(token, now=ANSWER.issued - 60) == ft.EXPIRED  # from the future: a clock or a forger


def test_the_previous_key_still_checks_after_a_rotation_and_not_once_dropped():
    old = ft.mint(OLD_KEY, ANSWER)
    assert check(old, keys=(KEY, OLD_KEY)) == ANSWER
    assert check(old, keys=(KEY,)) == ft.FORGED


@pytest.mark.parametrize(
    "token", [None, 42, "", "no-dot", "a.b.c", "!!!.???", "W10.AAAA", "x" * (ft.MAX_TOKEN_CHARS + 1), "bnVsbA.AAAA"]
)
def test_anything_else_is_malformed(token):
    assert check(token) == ft.MALFORMED


def test_the_input_digest_names_the_exact_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    digest = ft.input_digest(pixels)
    assert len(digest) == ft.DIGEST_CHARS
    assert ft.input_digest(pixels.copy()) == digest
    changed = pixels.copy()
    changed[0, 0, 0] ^= 1
    assert ft.input_digest(changed) != digest


def test_keys_are_comma_separated_signing_key_first_and_never_short():
    assert ft.parse_keys(f"{'n' * 32}, {'o' * 40}") == (b"n" * 32, b"o" * 40)
    for raw in ("short", f"{'n' * 32},", f"{'n' * 32},tiny"):
        with pytest.raises(ValueError, match="at least 32"):
            ft.parse_keys(raw)
