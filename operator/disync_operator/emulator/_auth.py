"""ACS3-HMAC-SHA256 verification, as the Alibaba Cloud gateway does it.

Checks run in this order (the first failure answers):

1. ``Authorization`` present and V3-shaped, algorithm ACS3-HMAC-SHA256      -> 400 IncompleteSignature
2. the required headers present and signed, every ``x-acs-*`` header signed,
   every signed header present                                            -> 400 IncompleteSignature
3. ``x-acs-date`` well formed                                              -> 400 InvalidTimeStamp.Format
4. ``x-acs-date`` within the tolerance (15 min) of the server clock        -> 400 InvalidTimeStamp.Expired
5. the AccessKey exists                                                    -> 404 InvalidAccessKeyId.NotFound
   (sources disagree between 400 and 404; we follow the API-gateway table's 404. Clients must treat both as
   terminal.) ``x-acs-accesskey-id``, when sent (STS), must name the same key -> 400 IncompleteSignature
6. ``x-acs-content-sha256`` equals sha256(body)                            -> 400 SignatureDoesNotMatch
7. the signature                                                           -> 400 SignatureDoesNotMatch
8. STS token: required/equal/not expired                                   -> 400 MissingSecurityToken /
                                                                              InvalidSecurityToken.Mismatch /
                                                                              InvalidSecurityToken.Expired
9. nonce not seen within the tolerance window                              -> 400 SignatureNonceUsed

The nonce is recorded only after the signature checked out, so a forged request cannot burn a legitimate nonce.
The canonical query is rebuilt from the *decoded* query parameters: the official SDK puts ``+`` for spaces on the
wire (``urlencode``) but signs ``%20``, while our client sends the canonical string verbatim; both must verify.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from disync_operator.dataworks._signing import ALGORITHM, canonical_request, parse_authorization
from disync_operator.emulator._config import AccessKeyConfig
from disync_operator.emulator._errors import ApiError

REQUIRED_SIGNED_HEADERS: tuple[str, ...] = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

WallClock = Callable[[], float]


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs from an HTTP request; ``headers`` maps lower-case names to every value sent."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, Sequence[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _incomplete(detail: str) -> ApiError:
    return ApiError(400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards. {detail}")


class NonceCache:
    """Nonces seen within the last ``window`` seconds, bounded to ``capacity`` entries.

    Arrival order equals expiry order (fixed window), so expired entries are always at the front. When more than
    ``capacity`` live nonces exist the oldest are forgotten: bounded memory beats perfect replay detection for an
    emulator, and the cap (100k by default) is far above any test's request volume.
    """

    def __init__(self, window: float, capacity: int, clock: WallClock) -> None:
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, access_key_id: str, nonce: str) -> bool:
        """True when the nonce is fresh (and is now remembered); False on replay."""
        now = self._clock()
        key = (access_key_id, nonce)
        with self._lock:
            while self._seen:
                oldest_key, expires = next(iter(self._seen.items()))
                if expires > now:
                    break
                del self._seen[oldest_key]
            if key in self._seen:
                return False
            self._seen[key] = now + self._window
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True


class Verifier:
    def __init__(
        self,
        access_keys: Sequence[AccessKeyConfig],
        *,
        tolerance_seconds: float = 900,
        nonce_capacity: int = 100_000,
        wall_clock: WallClock | None = None,
    ) -> None:
        self._keys = {key.id: key for key in access_keys}
        self._tolerance = tolerance_seconds
        self._clock: WallClock = wall_clock or time.time
        self.nonces = NonceCache(tolerance_seconds, nonce_capacity, self._clock)

    def verify(self, request: SignedRequest) -> AccessKeyConfig:
        """Return the AccessKey that signed ``request`` or raise ApiError."""
        raw_auth = request.header("authorization")
        if raw_auth is None:
            raise _incomplete("The Authorization header is missing.")
        parsed = parse_authorization(raw_auth)
        if parsed is None:
            raise _incomplete("The Authorization header is malformed.")
        if parsed.algorithm != ALGORITHM:
            raise _incomplete(f"Unsupported signature algorithm {parsed.algorithm!r}; expected {ALGORITHM}.")

        signed = list(parsed.signed_headers)
        if signed != sorted(set(signed)) or any(name != name.lower() for name in signed):
            raise _incomplete("SignedHeaders must be lower-case, sorted and without duplicates.")
        for name in REQUIRED_SIGNED_HEADERS:
            if request.header(name) is None:
                raise _incomplete(f"The required header {name!r} is missing.")
            if name not in signed:
                raise _incomplete(f"The header {name!r} must be signed.")
        for name in request.headers:
            if name.startswith("x-acs-") and name not in signed:
                raise _incomplete(f"The header {name!r} is present but not signed.")
        for name in signed:
            if name not in request.headers:
                raise _incomplete(f"The signed header {name!r} is not present.")

        self._check_date(request.header("x-acs-date") or "")

        key = self._keys.get(parsed.access_key_id)
        if key is None:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        sent_key_id = request.header("x-acs-accesskey-id")
        if sent_key_id is not None and sent_key_id != parsed.access_key_id:
            raise _incomplete("x-acs-accesskey-id does not match the Credential of the Authorization header.")

        body_sha256 = hashlib.sha256(request.body).hexdigest()
        if (request.header("x-acs-content-sha256") or "").lower() != body_sha256:
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                "The x-acs-content-sha256 header does not match the request body.",
            )

        headers_to_sign = {name: ",".join(sorted(v.strip() for v in request.headers[name])) for name in signed}
        canonical, _ = canonical_request(request.method, request.path, request.query, headers_to_sign, body_sha256)
        string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(key.secret.get_secret_value().encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parsed.signature):
            # Like the cloud, reveal the string-to-sign (a hash of the canonical request) to help debugging; it
            # carries no secret. The canonical request itself is withheld: it would echo the security token.
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}",
            )

        self._check_security_token(key, request.header("x-acs-security-token"))

        if not self.nonces.check_and_add(key.id, request.header("x-acs-signature-nonce") or ""):
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        return key

    def _check_date(self, value: str) -> None:
        if not _DATE_RE.match(value):
            raise ApiError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
        try:
            parsed = time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        if abs(calendar.timegm(parsed) - self._clock()) > self._tolerance:
            raise ApiError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _check_security_token(self, key: AccessKeyConfig, sent: str | None) -> None:
        if key.security_token is None:
            if sent is not None:
                raise ApiError(
                    400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken mismatch with the AccessKey."
                )
            return
        if sent is None:
            raise ApiError(400, "MissingSecurityToken", "SecurityToken is mandatory for this AccessKey.")
        if not hmac.compare_digest(sent.encode(), key.security_token.get_secret_value().encode()):
            raise ApiError(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken mismatch with the AccessKey.")
        expiration = key.security_token_expiration
        if expiration is not None and dt.datetime.fromtimestamp(self._clock(), dt.UTC) >= expiration:
            raise ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
