"""The emulator's STS (RRSA): the operator's own AssumeRoleWithOIDC provider exchanges a signed OIDC token for the
role's credentials, which then sign a DataWorks call; a token the issuer did not sign, an expired one, another
audience, another issuer or an unknown role are refused with the RRSA error codes, and the token never reaches the
request log."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from disync_operator.dataworks import (
    CredentialsError,
    DataWorksClient,
    GetDISyncInstanceInfoRequest,
    OIDCRoleCredentialsProvider,
    TaskType,
)
from disync_operator.emulator import Emulator, EmulatorConfig

ISSUER = "https://kubernetes.default.svc"
ROLE, PROVIDER = "acs:ram::1:role/disync", "acs:ram::1:oidc-provider/ack-rrsa-test"
STS_AK, STS_SECRET, STS_TOKEN = "STS.emulated", "sts-secret-7f3e", "sts-token-" + "9" * 40
GET = GetDISyncInstanceInfoRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A service-account issuer: an RSA key (or an EC P-256 one, as the real node's API server has), its JWKS, and
    tokens it signs."""

    def __init__(self, kid: str = "k1", alg: str = "RS256") -> None:
        self.kid, self.alg = kid, alg
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        if self.alg == "ES256":
            point = self.ec.public_key().public_numbers()
            x, y = point.x.to_bytes(32, "big"), point.y.to_bytes(32, "big")
            jwk = {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid, "x": b64(x), "y": b64(y)}
            return {"keys": [jwk]}
        numbers = self.rsa.public_key().public_numbers()
        n, e = numbers.n.to_bytes(256, "big"), numbers.e.to_bytes(3, "big")
        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": b64(n), "e": b64(e)}]}

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.ec.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.rsa.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": ["sts.aliyuncs.com"],
            "sub": "system:serviceaccount:disync-system:disync-operator",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            **overrides,
        }
        head = b64(json.dumps({"alg": self.alg, "kid": self.kid}).encode())
        body = b64(json.dumps(claims).encode())
        return f"{head}.{body}.{b64(self.sign(f'{head}.{body}'.encode()))}"


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def issuer(request: pytest.FixtureRequest) -> Issuer:
    return Issuer(alg=request.param)


@pytest.fixture
async def emulator(issuer: Issuer) -> AsyncIterator[tuple[Emulator, str]]:
    config = EmulatorConfig.model_validate(
        {
            "access_keys": [{"id": STS_AK, "secret": STS_SECRET, "security_token": STS_TOKEN}],
            "projects": [{"id": 10000, "tasks": [{"file_id": 100, "task_type": "DI_REALTIME", "name": "orders"}]}],
            "sts": {
                "issuer": ISSUER,
                "jwks": issuer.jwks(),
                "roles": [{"role_arn": ROLE, "oidc_provider_arn": PROVIDER, "access_key_id": STS_AK}],
            },
        }
    )
    emulator = Emulator(config)
    async with emulator.serve() as url:
        yield emulator, url


def provider(url: str, token_file: Path, role: str = ROLE) -> OIDCRoleCredentialsProvider:
    return OIDCRoleCredentialsProvider(role, PROVIDER, str(token_file), sts_endpoint=url, environ={})


async def test_a_projected_token_becomes_the_roles_credentials(
    emulator: tuple[Emulator, str], issuer: Issuer, tmp_path: Path
) -> None:
    emu, url = emulator
    token = issuer.token()
    (tmp_path / "token").write_text(token)
    credentials = await provider(url, tmp_path / "token").get_credentials()
    assert credentials.access_key_id == STS_AK
    async with DataWorksClient(url, provider(url, tmp_path / "token")) as dataworks:
        assert (await dataworks.get_instance_info(GET)).data.status == "NORUN"
    sts_calls = emu.request_log.entries(action="AssumeRoleWithOIDC")
    assert [call.code for call in sts_calls] == ["success", "success"]  # one per provider
    assert token not in json.dumps([entry.as_dict() for entry in emu.request_log.entries()])
    (signed,) = emu.request_log.entries(action="GetDISyncInstanceInfo")
    assert signed.access_key_id == STS_AK


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda i: Issuer("k1", i.alg).token(), "AuthenticationFail.OIDCToken.Invalid"),  # another key, same kid
        (lambda i: i.token(exp=int(time.time()) - 5), "AuthenticationFail.OIDCToken.Expired"),
        (lambda i: i.token(aud=["kubernetes"]), "AuthenticationFail.OIDCToken.AudienceNotMatch"),
        (lambda i: i.token(iss="https://elsewhere"), "AuthenticationFail.OIDCToken.IssuerNotMatch"),
        (lambda i: "not-a-jwt", "InvalidParameter.OIDCToken"),
    ],
    ids=["foreign-signature", "expired", "audience", "issuer", "garbage"],
)
async def test_a_token_the_provider_would_not_trust_is_refused(
    emulator: tuple[Emulator, str], issuer: Issuer, tmp_path: Path, make: Any, code: str
) -> None:
    _, url = emulator
    (tmp_path / "token").write_text(make(issuer))
    with pytest.raises(CredentialsError) as refused:
        await provider(url, tmp_path / "token").get_credentials()
    assert refused.value.code == code


async def test_an_unknown_role_is_refused(emulator: tuple[Emulator, str], issuer: Issuer, tmp_path: Path) -> None:
    _, url = emulator
    (tmp_path / "token").write_text(issuer.token())
    with pytest.raises(CredentialsError) as refused:
        await provider(url, tmp_path / "token", role="acs:ram::1:role/other").get_credentials()
    assert refused.value.code == "EntityNotExist.Role"
