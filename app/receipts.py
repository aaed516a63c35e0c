"""Receipts: how any pod can count feedback for a model version it does not serve.

A canary runs another model version behind the same Service, and a balancer that spreads requests (a mesh, an
ingress, clients that do not keep connections alive) sends a prediction's feedback to any pod. A pod must not
count a `model_version` a client made up (every value would be a new series), and it cannot ask the other pods
what they serve without shared state. So each `/predict` answer carries a receipt: an HMAC of the model version
under a key every pod of the deployment holds (`FEEDBACK_RECEIPT_KEY`, from one Secret on both Deployments).
Any pod checks it with that key alone and counts the item under the version that made the prediction; only a
pod of that deployment can have minted it, so the versions a client can name are the ones the pods served.

A receipt names a version, not one prediction: like the version itself before it, it bounds the label values
feedback can create, not how much feedback a client sends. Without a key (none configured) no receipt is
issued and a pod takes feedback for its own version only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

log = logging.getLogger("app.receipts")

KEY_ENV = "FEEDBACK_RECEIPT_KEY"
# `openssl rand -hex 32` gives 64 characters; fewer than 32 (128 bits as hex) are refused, not silently used.
MIN_KEY_CHARS = 32
# 128 bits of the SHA-256 MAC: forging one is out of reach, and the receipt stays short in every answer.
MAC_HEX_CHARS = 32


class Receipts:
    """Issues and checks the receipt of model versions under one key."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"{KEY_ENV} must hold at least {MIN_KEY_CHARS} characters (openssl rand -hex 32)")
        self._key = key.encode()

    def issue(self, version: str) -> str:
        mac = hmac.new(self._key, b"model_version\x00" + version.encode(), hashlib.sha256).hexdigest()
        return mac[:MAC_HEX_CHARS]

    def valid(self, version: object, receipt: object) -> bool:
        if not (isinstance(version, str) and isinstance(receipt, str)) or len(receipt) != MAC_HEX_CHARS:
            return False
        return hmac.compare_digest(self.issue(version), receipt)


def from_environment() -> Receipts | None:
    key = os.environ.get(KEY_ENV, "")
    if not key:
        log.warning("%s is not set: feedback is accepted for this pod's own model version only", KEY_ENV)
        return None
    return Receipts(key)
