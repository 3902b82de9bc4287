"""Key secrets: how they are made, how they look, and how they are stored (hashed only).

A key is ``mpk_`` followed by 40 base62 characters (about 238 bits), so that secret
scanners can find a leaked one by its prefix. Only the SHA-256 of the whole key is stored:
a key is random and long, so a slow password hash would add nothing but latency. The first
12 characters are kept in the clear as the key's ``prefix``, to tell keys apart in lists.
"""

from __future__ import annotations

import hashlib
import secrets
import string

KEY_PREFIX = "mpk_"
TOKEN_PREFIX = "mpt_"
_ALPHABET = string.ascii_letters + string.digits
_SECRET_CHARS = 40
DISPLAY_CHARS = 12


def new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_CHARS))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)
