"""STS AssumeRoleWithOIDC, as RRSA uses it: a pod's projected ServiceAccount token (audience sts.aliyuncs.com)
exchanged for temporary credentials of a role.

The token is checked as the cloud checks it against a registered OIDC provider: an RS256 or ES256 JWT whose signature
verifies with a key of the issuer's JSON Web Key Set (a Kubernetes API server's /openid/v1/jwks), whose issuer is
the provider's, whose audience includes the configured one, and which is within its validity. The role and the provider
must be configured together. The answer's credentials are one of the emulator's STS AccessKeys (with a security
token), so the DataWorks calls made with them are checked as any other. Error codes: the ones the ACK RRSA
documentation lists (dataworks-api.md); which code each check gives is the emulator's choice.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from disync_operator.emulator._config import AccessKeyConfig, StsConfig
from disync_operator.emulator._errors import ApiError

ACTION = "AssumeRoleWithOIDC"
_MAX_TOKEN = 20_000  # characters (RAM's documented limit)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# The two algorithms a Kubernetes service-account issuer signs with (an RSA or an EC P-256 key).
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}


def _number(text: str) -> int:
    return int.from_bytes(_b64url(text), "big")


def _verify(alg: str, key: Mapping[str, Any], signature: bytes, signed: bytes) -> None:
    """Raises InvalidSignature (or ValueError for a malformed key or signature) unless `signature` verifies."""
    if alg == "RS256":
        rsa = RSAPublicNumbers(_number(key["e"]), _number(key["n"])).public_key()
        rsa.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        return
    if key.get("crv") != "P-256" or len(signature) != 64:
        raise ValueError("not a P-256 signature")
    ec_key = ec.EllipticCurvePublicNumbers(_number(key["x"]), _number(key["y"]), ec.SECP256R1()).public_key()
    # A JWS carries r||s; cryptography verifies the DER form.
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    ec_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))


def _invalid(message: str) -> ApiError:
    return ApiError(400, "AuthenticationFail.OIDCToken.Invalid", message)


def verify_token(token: str, sts: StsConfig, now: dt.datetime) -> dict[str, Any]:
    """The token's claims, once its signature, issuer, audience and validity are checked; ApiError otherwise."""
    if not 4 <= len(token) <= _MAX_TOKEN or token.count(".") != 2:
        raise ApiError(400, "InvalidParameter.OIDCToken", "The OIDCToken is not a JWT.")
    head, body, signature = token.split(".")
    try:
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(body))
        signed = _b64url(signature)
    except (binascii.Error, ValueError):
        raise _invalid("The OIDCToken can't be decoded.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") not in _KEY_TYPES:
        raise _invalid("The OIDCToken must be an RS256 or ES256 JWT.")
    key = next((k for k in sts.jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if key is None or key.get("kty") != _KEY_TYPES[header["alg"]]:
        raise _invalid("The OIDCToken's signing key is not one of the issuer's.")
    try:
        _verify(header["alg"], key, signed, f"{head}.{body}".encode())
    except (InvalidSignature, ValueError, KeyError):
        raise _invalid("The OIDCToken's signature does not verify.") from None
    if claims.get("iss") != sts.issuer:
        raise ApiError(
            400, "AuthenticationFail.OIDCToken.IssuerNotMatch", "The OIDCToken's issuer is not the provider's."
        )
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences or []
    if sts.audience not in audiences:
        raise ApiError(
            400, "AuthenticationFail.OIDCToken.AudienceNotMatch", f"The OIDCToken is not for {sts.audience}."
        )
    seconds = now.timestamp()
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= seconds:
        raise ApiError(400, "AuthenticationFail.OIDCToken.Expired", "The OIDCToken has expired.")
    if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > seconds + 60:
        raise _invalid("The OIDCToken is not valid yet.")
    return claims


def assume_role_with_oidc(
    form: Mapping[str, str], sts: StsConfig, keys: Mapping[str, AccessKeyConfig], now: dt.datetime, request_id: str
) -> dict[str, Any]:
    """The answer to AssumeRoleWithOIDC (RoleArn, OIDCProviderArn, OIDCToken, RoleSessionName, DurationSeconds)."""
    for name in ("RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"):
        if not form.get(name):
            raise ApiError(400, f"MissingParameter.{name}", f"{name} is mandatory for this action.")
    role = next((r for r in sts.roles if r.role_arn == form["RoleArn"]), None)
    if role is None:
        raise ApiError(404, "EntityNotExist.Role", "The specified Role not exists.")
    if role.oidc_provider_arn != form["OIDCProviderArn"]:
        raise ApiError(403, "AuthenticationFail.NoPermission", "No such OIDC Provider registered.")
    claims = verify_token(form["OIDCToken"], sts, now)
    try:
        duration = int(form.get("DurationSeconds") or 3600)
    except ValueError:
        raise ApiError(400, "InvalidParameter.DurationSeconds", "DurationSeconds must be a number.") from None
    if not 900 <= duration <= 43200:
        raise ApiError(400, "InvalidParameter.DurationSeconds", "DurationSeconds must be 900 to 43200.")
    key = keys[role.access_key_id]
    token = key.security_token.get_secret_value() if key.security_token else ""
    expiration = key.security_token_expiration or now + dt.timedelta(seconds=duration)
    return {
        "RequestId": request_id,
        "AssumedRoleUser": {"Arn": f"{role.role_arn}/{form['RoleSessionName']}", "AssumedRoleId": role.access_key_id},
        "OIDCTokenInfo": {"Subject": str(claims.get("sub", "")), "Issuer": sts.issuer},
        "Credentials": {
            "AccessKeyId": key.id,
            "AccessKeySecret": key.secret.get_secret_value(),
            "SecurityToken": token,
            "Expiration": expiration.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
