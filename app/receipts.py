"""Receipts: feedback counts only for a prediction the model made, at most once per pod, for a limited time.

Every `/predict` answer carries one `receipt` for its whole batch: the model version, the class predicted for
each row, when it was issued and a random nonce, sealed with a MAC (keyed BLAKE2b) under the pod's key. A
feedback item names that receipt, the row and the actual class: the predicted class and the version come from
the verified receipt, never from the client. One receipt per batch, not one per row: a MAC per row would cost
about as much CPU as the rest of a request at 256 rows (``python -m benchmarks.receipts``).

Refused, each with a reason of ``app.metrics.INVALID_REASONS``: a receipt that is not one (any type, charset
or length: ``invalid_receipt``), one minted under another key (``receipt_other_key``), an altered or forged one
(``invalid_receipt``), one older than ``FEEDBACK_RECEIPT_TTL_SECONDS`` or than this pod's record of spent
receipts (``receipt_expired``), and a row already counted on this pod (``receipt_replayed``, app/spent.py).

The key: ``FEEDBACK_RECEIPT_KEY`` (a Secret shared by every pod of the stable and canary Deployments), so that
whichever pod a balancer sends the feedback to can check it. Without it the pod mints a random key once, kept
beside its spent set where every worker (and every restarted worker) reads it: receipts then verify on the pod
that issued them only. What crosses pods in either case: docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.spent import SpentSet

log = logging.getLogger("app.receipts")

KEY_ENV = "FEEDBACK_RECEIPT_KEY"
TTL_ENV = "FEEDBACK_RECEIPT_TTL_SECONDS"
STATE_DIR_ENV = "FEEDBACK_STATE_DIR"
SPENT_MAX_MB_ENV = "FEEDBACK_SPENT_MAX_MB"
DEFAULT_TTL_SECONDS = 3600
DEFAULT_SPENT_MAX_MB = 16
# `openssl rand -hex 32` gives 64 characters; fewer than 32 (128 bits as hex) are refused, not silently used.
MIN_KEY_CHARS = 32
# Pods' clocks differ a little: a receipt from a pod whose clock runs ahead is still taken within this.
CLOCK_SKEW_SECONDS = 60
# 128 bits: forging one is out of reach, and the receipt stays short.
MAC_BYTES = 16
KEY_ID_BYTES = 4
NONCE_BYTES = 8
EPHEMERAL_KEY_FILE = "receipt-key"

# format, issue time (s), nonce, key id, version length; then the version, the row count, one class index per
# row (1 byte, or 2 for models of more than 256 classes), the MAC.
_HEAD = struct.Struct(">BI8s4sB")
_ROWS = struct.Struct(">H")
_CLASS_DTYPE = {1: np.dtype(np.uint8), 2: np.dtype(">u2")}
_MIN_BYTES = _HEAD.size + _ROWS.size + 1 + MAC_BYTES
# A 256-row receipt of a 2-byte-class model with a 255-character version, base64: anything longer is not one.
MAX_RECEIPT_CHARS = 4 * -(-(_HEAD.size + 255 + _ROWS.size + 2 * 256 + MAC_BYTES) // 3)


def _mac(key: bytes, message: bytes) -> bytes:
    # Keyed BLAKE2b is a MAC by design (no HMAC construction needed) and costs about two thirds of HMAC-SHA256
    # for a receipt's few hundred bytes.
    return hashlib.blake2b(message, key=key, digest_size=MAC_BYTES).digest()


class ReceiptRefused(Exception):
    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Receipt:
    version: str
    issued: int
    nonce: bytes
    classes: np.ndarray  # class index per row


class Receipts:
    """Issues and checks receipts under one key; records spent rows in ``spent``."""

    def __init__(self, key: bytes, spent: SpentSet, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._key = key
        self._key_id = _mac(key, b"receipt key id")[:KEY_ID_BYTES]
        self.spent = spent
        self.ttl = ttl_seconds
        self._versions: dict[str, bytes] = {}

    def issue(self, version: str, classes: np.ndarray, n_classes: int) -> str:
        """The receipt of one answered batch: ``classes`` holds the predicted class index of each row."""
        encoded = self._versions.get(version)
        if encoded is None:
            encoded = self._versions[version] = version.encode()[:255]
        width = 1 if n_classes <= 256 else 2
        body = b"".join(
            (
                _HEAD.pack(width, int(time.time()), os.urandom(NONCE_BYTES), self._key_id, len(encoded)),
                encoded,
                _ROWS.pack(len(classes)),
                np.asarray(classes, dtype=_CLASS_DTYPE[width]).tobytes(),
            )
        )
        mac = _mac(self._key, body)
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")

    def verify(self, text: object, now: float | None = None) -> Receipt:
        """The receipt ``text`` stands for, or ``ReceiptRefused``; any input, never another exception."""
        if not isinstance(text, str) or not 0 < len(text) <= MAX_RECEIPT_CHARS or not text.isascii():
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried") from None
        if len(raw) < _MIN_BYTES:
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried")
        width, issued, nonce, key_id, version_length = _HEAD.unpack_from(raw)
        if key_id != self._key_id:
            raise ReceiptRefused(
                "receipt_other_key",
                "the receipt was issued under another key (another pod without a shared key, or a rotated key)",
            )
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(_mac(self._key, body), mac):
            raise ReceiptRefused("invalid_receipt", "the receipt was altered or forged")
        # Sealed by this key: the layout below is one this code wrote, but check it rather than trust it.
        offset = _HEAD.size + version_length
        dtype = _CLASS_DTYPE.get(width)
        if dtype is None or len(body) < offset + _ROWS.size:
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried")
        (rows,) = _ROWS.unpack_from(body, offset)
        if len(body) != offset + _ROWS.size + rows * dtype.itemsize or rows == 0:
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried")
        now = time.time() if now is None else now
        if issued > now + CLOCK_SKEW_SECONDS:
            raise ReceiptRefused("invalid_receipt", "the receipt was issued in the future")
        if issued + self.ttl < now:
            raise ReceiptRefused("receipt_expired", f"feedback is taken for {self.ttl} s after the prediction")
        # No allowance for skew here: only this pod's own lost set matters, and its clock is this one.
        if issued < self.spent.started():
            raise ReceiptRefused(
                "receipt_expired", "the prediction is older than this pod's record of counted feedback"
            )
        try:
            version = body[_HEAD.size : offset].decode("ascii")
        except UnicodeDecodeError:
            raise ReceiptRefused("invalid_receipt", "the receipt is not one a /predict answer carried") from None
        classes = np.frombuffer(body, dtype=dtype, count=rows, offset=offset + _ROWS.size)
        return Receipt(version=version, issued=issued, nonce=nonce, classes=classes)

    def spend(self, named: Iterable[tuple[Receipt, list[int]]]) -> None:
        """Record the rows named under each receipt as counted, all or none; ``ReceiptRefused`` if any was
        already, or is named twice."""
        rows_of: dict[bytes, tuple[Receipt, list[int]]] = {}
        for receipt, rows in named:
            # Two spellings of one receipt (base64's spare bits) are one receipt.
            if receipt.nonce in rows_of:
                rows_of[receipt.nonce][1].extend(rows)
            else:
                rows_of[receipt.nonce] = (receipt, list(rows))
        entries: dict[bytes, tuple[int, int]] = {}
        for nonce, (receipt, rows) in rows_of.items():
            # One bit per row of the batch; a row named twice sets its bit once.
            bits = np.zeros(len(receipt.classes), dtype=bool)
            bits[rows] = True
            if int(np.count_nonzero(bits)) != len(rows):
                raise ReceiptRefused("receipt_replayed", "the same prediction is named twice", 409)
            mask = int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")
            entries[nonce] = (mask, receipt.issued + self.ttl)
        outcome = self.spent.add_all(entries, now=int(time.time()))
        if outcome == "replayed":
            raise ReceiptRefused("receipt_replayed", "feedback for one of these predictions was already counted", 409)
        if outcome == "full":
            raise ReceiptRefused(
                "feedback_store_full", "this pod has recorded as much feedback as it can hold: retry later", 429
            )


def state_dir() -> Path:
    """Where the spent set (and a key minted here) live: shared by the workers, kept across their restarts."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc:
        return Path(multiproc) / "feedback"
    # One process on its own (tests, `flask run`): a directory of its own.
    return Path(tempfile.mkdtemp(prefix="feedback-state-"))


def _ephemeral_key(directory: Path) -> bytes:
    """The pod's own key: minted by whichever process comes first, read by the others."""
    path = directory / EPHEMERAL_KEY_FILE
    try:
        return bytes.fromhex(path.read_text())
    except FileNotFoundError:
        pass
    except ValueError:
        log.warning("%s is unreadable: minting a new key", path)
        path.unlink(missing_ok=True)
    fd, staging = tempfile.mkstemp(dir=directory, prefix=".key-")
    with os.fdopen(fd, "w") as out:
        out.write(os.urandom(32).hex())
    try:
        os.link(staging, path)  # atomic, and fails if another process won the race: then read its key
    except FileExistsError:
        pass
    finally:
        os.unlink(staging)
    return bytes.fromhex(path.read_text())


def from_environment() -> Receipts:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ttl = int(os.environ.get(TTL_ENV) or DEFAULT_TTL_SECONDS)
    if ttl <= 0:
        raise ValueError(f"{TTL_ENV} must be a positive number of seconds")
    max_bytes = int(float(os.environ.get(SPENT_MAX_MB_ENV) or DEFAULT_SPENT_MAX_MB) * 1024 * 1024)
    spent = SpentSet(directory / "spent.sqlite", max_bytes=max_bytes)
    key = os.environ.get(KEY_ENV, "")
    if key:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"{KEY_ENV} must hold at least {MIN_KEY_CHARS} characters (openssl rand -hex 32)")
        return Receipts(hashlib.sha256(b"feedback receipts\x00" + key.encode()).digest(), spent, ttl)
    log.warning(
        "%s is not set: receipts are checked under a key of this pod's own, so feedback is taken only by the pod "
        "that answered the prediction",
        KEY_ENV,
    )
    return Receipts(_ephemeral_key(directory), spent, ttl)
