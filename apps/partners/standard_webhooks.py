"""Standard Webhooks signatures (https://www.standardwebhooks.com), for deliveries we send and
webhooks we receive.

A message is signed with HMAC-SHA256 over ``<webhook-id>.<webhook-timestamp>.<body>``; the
``webhook-signature`` header holds one or more ``v1,<base64 signature>`` separated by spaces, so
a sender rotating its secret signs with the old and the new one for a while. Secrets are shown as
``whsec_<base64 key>``. A secret written otherwise (one from before, or typed by a partner) signs
with its own UTF-8 bytes: the ``whsec_`` form of it is ``whsec_`` + the base64 of those bytes.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from django.views.decorators.debug import sensitive_variables

SECRET_PREFIX = "whsec_"  # noqa: S105 - a public marker, not a secret
KEY_BYTES = 32
SIGNATURE_VERSION = "v1"


def secret_generate() -> str:
    """A new ``whsec_`` secret: 32 random bytes, base64 with the standard alphabet."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@sensitive_variables()
def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for. Raises ValueError for a ``whsec_`` secret that is not
    base64."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("a whsec_ secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a whsec_ secret needs a key after whsec_")
    return key


@sensitive_variables()
def signature(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


@sensitive_variables()
def signature_header(keys: Iterable[bytes], *, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: a signature per key, separated by spaces."""
    return " ".join(signature(key, message_id=message_id, timestamp=timestamp, body=body) for key in keys)


@sensitive_variables()
def signature_matches(keys: Iterable[bytes], *, message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1`` signature in ``header`` was made with any of ``keys``."""
    given = [part.encode() for part in header.split() if part.startswith(f"{SIGNATURE_VERSION},")]
    return any(
        hmac.compare_digest(signature(key, message_id=message_id, timestamp=timestamp, body=body).encode(), part)
        for key in keys
        for part in given
    )
