"""Feedback tokens: with every answer the service mints a token only it can make, and `POST /feedback` is accepted only
with the token of the answer it speaks of, within a window. The token ties the feedback to what was answered: the
request id, the model version, the label and a digest of the exact model input (so a shared thumbnail can be checked
against the picture the model saw), signed with HMAC-SHA256 under the service's FEEDBACK_KEY, as payment and webhook
APIs sign their callbacks. Stdlib only: the service mints and checks, harvest (monitor/harvest.py) checks again when
it has the key.

    token = base64url(JSON [issued, model_version, label, input_digest]) "." base64url(HMAC(key, signed text))

The request id is signed but not carried (the feedback names it itself). Several keys may check a token (the current
one first, which signs): after a rotation the previous key keeps the tokens it signed valid for their window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VERSION = 1
DIGEST_CHARS = 32  # 128 bits of SHA-256: the digest of a model input, in the token and in the prediction line
MIN_KEY_CHARS = 32  # a FEEDBACK_KEY shorter than this is refused (e.g. `openssl rand -base64 32` gives 44)
MAX_TOKEN_CHARS = 512  # a real token is ~130 characters; longer is refused before any decoding

# Why a token is refused (the service's error detail and harvest's rejection reasons).
MALFORMED, FORGED, EXPIRED = "malformed", "forged", "expired"


def input_digest(pixels: np.ndarray) -> str:
    """The digest of a model input (uint8 [H, W, 3], C order): what the prediction line and the token carry."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class Answer:
    """What a token vouches for."""

    request_id: str
    model_version: str
    label: str
    input_digest: str
    issued: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, answer: Answer) -> bytes:
    signed = json.dumps(
        [VERSION, answer.request_id, answer.issued, answer.model_version, answer.label, answer.input_digest],
        separators=(",", ":"),
    )
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def mint(key: bytes, answer: Answer) -> str:
    payload = json.dumps(
        [answer.issued, answer.model_version, answer.label, answer.input_digest], separators=(",", ":")
    )
    return f"{_b64(payload.encode())}.{_b64(_signature(key, answer))}"


def read(token: object, request_id: str) -> Answer | None:
    """The answer a token claims to be for (not yet checked), or None when it is not a token at all."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    payload, _ = token.split(".")
    try:
        issued, version, label, digest = json.loads(_unb64(payload))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        return None
    if not (isinstance(issued, int) and all(isinstance(v, str) for v in (version, label, digest))):
        return None
    return Answer(request_id, version, label, digest, issued)


def check(token: object, request_id: str, keys: Sequence[bytes], *, now: float, window_s: float) -> Answer | str:
    """The answer the token was minted for, or why it is refused (MALFORMED, FORGED, EXPIRED). Signatures are compared
    in constant time; the age is judged only once the signature holds, so a forger learns nothing from it."""
    answer = read(token, request_id)
    if answer is None:
        return MALFORMED
    try:
        signature = _unb64(str(token).split(".")[1])
    except (binascii.Error, ValueError):
        return MALFORMED
    if not any(hmac.compare_digest(signature, _signature(key, answer)) for key in keys):
        return FORGED
    if not 0 <= now - answer.issued <= window_s:
        return EXPIRED
    return answer


def parse_keys(raw: str) -> tuple[bytes, ...]:
    """FEEDBACK_KEY -> its keys: comma-separated, the current (signing) one first, then the previous one(s) still
    accepted. Raises ValueError for an empty or short key."""
    keys = tuple(part.strip() for part in raw.split(","))
    short = [i for i, key in enumerate(keys) if len(key) < MIN_KEY_CHARS]
    if not keys or short:
        raise ValueError(f"every key must be at least {MIN_KEY_CHARS} characters (e.g. `openssl rand -base64 32`)")
    return tuple(key.encode() for key in keys)
