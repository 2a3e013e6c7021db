"""Which credentials a DISyncInstance uses: a Secret in its own namespace, or the operator's default identity."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from disync_operator.controller.runtime.kube import KubeApi, KubeError
from disync_operator.dataworks import CredentialsError, CredentialsProvider, StaticCredentialsProvider
from disync_operator.types import DISyncInstanceSpec, SecretKeyNames

OPERATOR_DEFAULT = "operator-default"


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


def _decode(data: dict[str, str], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None


async def resolve(
    spec: DISyncInstanceSpec,
    namespace: str,
    kube: KubeApi,
    default: CredentialsProvider,
    default_version: str = OPERATOR_DEFAULT,
) -> ResolvedCredentials:
    if spec.credentials is None:
        return ResolvedCredentials(default, default_version)
    ref = spec.credentials.secret_ref
    where = f"Secret {namespace}/{ref.name}"
    try:
        # Always the CR's own namespace: the schema has no way to name another one.
        secret = await kube.get_secret(namespace, ref.name)
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
    keys = ref.keys or SecretKeyNames()
    data = secret.get("data") or {}
    access_key_id = _decode(data, keys.access_key_id)
    access_key_secret = _decode(data, keys.access_key_secret)
    missing = [
        k for k, v in ((keys.access_key_id, access_key_id), (keys.access_key_secret, access_key_secret)) if not v
    ]
    if missing:
        raise CredentialsUnavailable(f"{where} has no (valid) key(s): {', '.join(missing)}", version)
    assert access_key_id
    assert access_key_secret
    token = _decode(data, keys.security_token)
    return ResolvedCredentials(StaticCredentialsProvider(access_key_id, access_key_secret, token), version)
