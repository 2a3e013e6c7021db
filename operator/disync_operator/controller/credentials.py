"""Which credentials a DISyncInstance uses: a Secret in its own namespace, or the operator's default identity.

Two tenancy rules live here. A Secret is used only if it was made for the operator (its type, or a label): a CR's
author may point at any Secret of the namespace, and must not be able to turn a TLS key or a database password into
"credentials" sent to the cloud. The operator's own identity is used only in the namespaces the install allows.
Nothing read from a Secret ever appears in a message: problems name the Secret and the key, never a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from disync_operator.controller.runtime.kube import KubeApi, KubeError
from disync_operator.dataworks import (
    CredentialsError,
    CredentialsProvider,
    StaticCredentialsProvider,
    credential_problem,
)
from disync_operator.types import DISyncInstanceSpec, SecretKeyNames

OPERATOR_DEFAULT = "operator-default"
# A Secret opts in with this type, or with the label below (for Secrets whose type is set by another tool).
SECRET_TYPE = "disync.dev/dataworks-credentials"
SECRET_LABEL = "disync.dev/credentials"
SECRET_LABEL_VALUE = "dataworks"


@dataclass(frozen=True)
class ResolvedCredentials:
    provider: CredentialsProvider
    # Identifies *which* credentials were used (Secret uid + resourceVersion), never their value: a terminal
    # failure is retried once this changes, i.e. once the user fixed the Secret.
    version: str


class CredentialsUnavailable(CredentialsError):
    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


SecretReader = Callable[[str, str], Awaitable[dict[str, Any]]]


def meant_for_us(secret: dict[str, object]) -> bool:
    meta = secret.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    labelled = isinstance(labels, dict) and labels.get(SECRET_LABEL) == SECRET_LABEL_VALUE
    return secret.get("type") == SECRET_TYPE or labelled


def _value(data: dict[str, str], key: str, field: str, where: str, version: str) -> str | None:
    """The key's value, checked; None if the key is absent. A bad value is refused by name, never quoted."""
    raw = data.get(key)
    if raw is None:
        return None
    try:
        # Surrounding whitespace goes (a file written by an editor or `echo` ends in a line break); inside, none may be.
        value = base64.b64decode(raw, validate=True).decode("ascii").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CredentialsUnavailable(f"{where} key {key}: not printable ASCII", version) from None
    problem = credential_problem(field, value)
    if problem is not None:
        raise CredentialsUnavailable(f"{where} key {key}: {problem}", version)
    return value


async def resolve(
    spec: DISyncInstanceSpec,
    namespace: str,
    kube: KubeApi,
    default: CredentialsProvider,
    default_version: str = OPERATOR_DEFAULT,
    *,
    operator_identity_allowed: bool = True,
    read_secret: SecretReader | None = None,
) -> ResolvedCredentials:
    if spec.credentials is None:
        if not operator_identity_allowed:
            raise CredentialsUnavailable(
                f"namespace {namespace} may not use the operator's own identity "
                "(DISYNC_DEFAULT_CREDENTIALS_NAMESPACES): set spec.credentials.secretRef",
                f"{OPERATOR_DEFAULT}:not-allowed",
            )
        return ResolvedCredentials(default, default_version)
    ref = spec.credentials.secret_ref
    where = f"Secret {namespace}/{ref.name}"
    try:
        # Always the CR's own namespace: the schema has no way to name another one.
        secret = await (read_secret or kube.get_secret)(namespace, ref.name)
    except KubeError as error:
        if error.status == 404:
            raise CredentialsUnavailable(f"{where} not found", f"secret:{ref.name}:missing") from None
        if error.status == 403:
            raise CredentialsUnavailable(
                f"the operator may not read {where} (RBAC: secrets get)", f"secret:{ref.name}:forbidden"
            ) from None
        raise
    meta = secret.get("metadata", {})
    version = f"secret:{ref.name}:{meta.get('uid', '')}:{meta.get('resourceVersion', '')}"
    if not meant_for_us(secret):
        raise CredentialsUnavailable(
            f"{where} is not meant for disync-operator: give it type {SECRET_TYPE} or the label "
            f"{SECRET_LABEL}={SECRET_LABEL_VALUE}",
            version,
        )
    keys = ref.keys or SecretKeyNames()
    data = secret.get("data") or {}
    access_key_id = _value(data, keys.access_key_id, "access_key_id", where, version)
    access_key_secret = _value(data, keys.access_key_secret, "access_key_secret", where, version)
    missing = [
        k for k, v in ((keys.access_key_id, access_key_id), (keys.access_key_secret, access_key_secret)) if not v
    ]
    if missing:
        raise CredentialsUnavailable(f"{where} has no key(s): {', '.join(missing)}", version)
    assert access_key_id
    assert access_key_secret
    token = _value(data, keys.security_token, "security_token", where, version)
    return ResolvedCredentials(StaticCredentialsProvider(access_key_id, access_key_secret, token), version)
