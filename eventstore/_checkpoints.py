"""Signed checkpoints: ed25519 signatures of the store-wide chain's head, kept in the store.

A checkpoint is an ordinary record of the stream ``eventstore.checkpoints`` whose data
signs the log head just before it::

    {"key_id": "…", "log_hash": "…", "position": 41, "signature": "…", "signed_at": "…"}

``signature`` is the hex ed25519 signature of ``b"eventstore.checkpoint\\x00" +
utf8(canonical_json(data without "signature"))``. ``key_id`` is the first 16 hex digits
of the SHA-256 of the raw 32-byte public key. The private key lives outside the store
(a PEM file, or the PEM text in an environment variable); whoever verifies needs only
the public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ._canonical import canonical_json
from ._errors import SigningKeyError

CHECKPOINT_STREAM = "eventstore.checkpoints"
CHECKPOINT_TYPE = "eventstore.checkpoint"
_DOMAIN = b"eventstore.checkpoint\x00"
_SIGNED_FIELDS = ("key_id", "log_hash", "position", "signed_at")


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_message(data: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return _DOMAIN + canonical_json({k: data.get(k) for k in _SIGNED_FIELDS}).encode()


class CheckpointSigner:
    """Signs checkpoints with an ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def generate(cls) -> CheckpointSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "the signing key") -> CheckpointSigner:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"{source} is not an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source} is a {type(key).__name__}, not an ed25519 private key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CheckpointSigner:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read the signing key {path}: {exc}") from None
        return cls.from_pem(pem, f"signing key {path}")

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def data_json(self, position: int, log_hash: str, signed_at: str) -> str:
        """The canonical data of a checkpoint of the head ``(position, log_hash)``."""
        data: dict[str, Any] = {
            "key_id": self.key_id,
            "log_hash": log_hash,
            "position": position,
            "signed_at": signed_at,
        }
        data["signature"] = self._key.sign(signed_message(data)).hex()
        return canonical_json(data)


class PublicKeys:
    """The public keys a verifier accepts checkpoints from, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    def __bool__(self) -> bool:
        return bool(self._keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "the public key") -> PublicKeys:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{source} is not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{source} is a {type(key).__name__}, not an ed25519 public key")
        return cls([key])

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> PublicKeys:
        keys: list[Ed25519PublicKey] = []
        for path in paths:
            try:
                pem = Path(path).read_bytes()
            except OSError as exc:
                raise SigningKeyError(f"cannot read the public key {path}: {exc}") from None
            keys += cls.from_pem(pem, f"public key {path}")._keys.values()
        return cls(keys)

    def problem(self, data: Mapping[str, Any]) -> str | None:
        """Why ``data``'s signature does not verify under these keys; None if it does."""
        key = self._keys.get(str(data.get("key_id")))
        if key is None:
            return f"signed by key {data.get('key_id')!r}, not one of {', '.join(self.ids)}"
        try:
            key.verify(bytes.fromhex(str(data.get("signature"))), signed_message(data))
        except (InvalidSignature, ValueError):
            return f"the signature does not verify under key {data.get('key_id')}"
        return None
