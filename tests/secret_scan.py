"""The standing secret scan: after every test that ran an operator, nothing it emitted holds a secret value."""

from __future__ import annotations

import base64
import contextlib

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_SECRET, OperatorProcess

# Every secret value the suite hands an operator (the emulator's registries, the tests' Secrets). After each test
# that ran an operator, its log, its metrics and the namespace's Events and DISyncInstances are scanned for them.
KNOWN_SECRETS = [
    DEMO_ACCESS_KEY_SECRET,
    "from-a-kubernetes-secret",
    "from-a-kubernetes-secret-5e1c7a",
    "sts-temporary-secret-9b3f02",
    "CAIS-sts-security-token-4d8e61f0a2",
    "wrong-but-still-secret-71c2d9",
    "db-password-planted-9f3e1c",
]


def secret_forms(value: str) -> set[str]:
    """A value as it could appear: raw, or base64 (std/url-safe, at any alignment inside a larger blob)."""
    raw = value.encode()
    forms = {value, base64.b64encode(raw).decode().rstrip("=")}
    for shift in range(3):
        chunk = raw[shift:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        if len(chunk) >= 12:
            forms |= {base64.b64encode(chunk).decode(), base64.urlsafe_b64encode(chunk).decode()}
    return forms


def leaked_secrets(text: str) -> list[str]:
    return [value for value in KNOWN_SECRETS if any(form in text for form in secret_forms(value))]


def assert_nothing_secret_emitted(kubectl: Kubectl, operators: list[OperatorProcess]) -> None:
    """The standing secret scan: what a tenant or an operator's reader can see holds no secret value."""
    seen = [kubectl.run("get", "events,disyncinstances", "--all-namespaces", "-o", "json", check=False).stdout]
    for operator in operators:
        seen.append(operator.log())
        with contextlib.suppress(Exception):  # a test may have killed it: its log is what is left
            seen.append(operator.metrics())
    assert leaked_secrets("\n".join(seen)) == []
