"""Who is calling, and may they: the API key, or an OAuth2 / OIDC bearer JWT with scopes.

Two kinds of credentials, either accepted when configured:

- `X-API-Key: <SHOPFEAST_API_KEY>`: the service key, every scope (constant-time comparison);
- `Authorization: Bearer <JWT>` signed by the configured issuer: its public keys come from a JWKS
  file (`SHOPFEAST_JWT_JWKS_FILE`, the issuer's `jwks_uri` document saved to disk; re-read when it
  changes, so a key rotation needs no restart and no request ever waits on the network); `iss`,
  `aud`, `exp` and `nbf` are checked, and the token's scopes (`scope`, space-separated, or `scp`,
  a list) must hold the endpoint group's scope.

Endpoint groups and their scopes: `features:read` (/features/...), `predict` (/predict/...,
/recommendations), `events:write` (endpoints that accept events), `metrics:read` (/metrics).
Without any credential configured (development) everything is open.

Feast 0.67 has OIDC in `feast.permissions` (OidcTokenParser): it needs the issuer's discovery
URL reachable at request time, accepts RS256 only, reads Keycloak-shaped roles, and enforces
permissions inside `FeatureStore` calls that this API's Redis reads do not go through; it is PyJWT
underneath, which is what this module uses directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

FEATURES_READ = "features:read"
PREDICT = "predict"
EVENTS_WRITE = "events:write"
METRICS_READ = "metrics:read"
SCOPES = (FEATURES_READ, PREDICT, EVENTS_WRITE, METRICS_READ)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
CACHE_SIZE = 4096  # verified tokens kept (a token verifies once, then costs a dict lookup)


class AuthError(Exception):
    """A missing or bad credential (401) or a missing scope (403); the message is safe to show."""

    def __init__(self, message: str, status: int = 401, scope: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.scope = message, status, scope


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: a subject, how it proved it, what it may do."""

    subject: str
    method: str  # "api_key", "jwt" or "none"
    scopes: frozenset[str] = field(default_factory=frozenset)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


ANONYMOUS = Principal("anonymous", "none", frozenset(SCOPES))
SERVICE_KEY = Principal("api-key", "api_key", frozenset(SCOPES))


class JwtVerifier:
    """Bearer tokens of one issuer, checked against the public keys of a JWKS file."""

    def __init__(
        self,
        jwks_file: Path,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ALGORITHMS,
        leeway_s: float = 30.0,
        recheck_s: float = 10.0,
    ) -> None:
        self.jwks_file = Path(jwks_file)
        self.issuer, self.audience = issuer, audience
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        self.recheck_s = recheck_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._load()  # an unreadable or empty key file stops start-up

    def _load(self) -> None:
        st = os.stat(self.jwks_file)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        keys = jwt.PyJWKSet.from_json(self.jwks_file.read_text()).keys
        usable = {k.key_id: k for k in keys if getattr(k, "public_key_use", None) in (None, "sig")}
        if not usable:
            raise ValueError(f"{self.jwks_file}: no signing keys")
        with self._lock:
            self._keys, self._stamp = usable, stamp
            self._cache.clear()  # a removed key must stop validating now

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= self.recheck_s:
            self._checked = now
            # A file half-written by a rotation keeps the keys last read (start-up proved one).
            with contextlib.suppress(OSError, ValueError, jwt.PyJWKSetError):
                self._load()

    def verify(self, token: str) -> Principal:
        self._refresh()
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self._keys.get(kid) if kid is not None else _only(self._keys)
            if key is None:
                raise AuthError("bearer token signed by an unknown key")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("bearer token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"bearer token rejected ({type(exc).__name__})") from exc
        principal = Principal(str(claims["sub"]), "jwt", frozenset(_scopes(claims)))
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[digest] = (principal, float(claims["exp"]))
        return principal


def _only(keys: dict) -> jwt.PyJWK | None:
    """A token without `kid` is accepted only when the file holds exactly one key."""
    return next(iter(keys.values())) if len(keys) == 1 else None


def _scopes(claims: dict) -> set[str]:
    """`scope` (space-separated, RFC 9068) and `scp` (a list or a string: Okta, Entra ID)."""
    found: set[str] = set()
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(str(v) for v in value)
    return found


def authenticate(
    api_key: str | None,
    verifier: JwtVerifier | None,
    x_api_key: str | None,
    authorization: str | None,
) -> Principal:
    """The caller, from its headers; AuthError when a credential is needed and none is valid."""
    if not api_key and verifier is None:
        return ANONYMOUS
    if x_api_key and api_key:
        if secrets.compare_digest(x_api_key.encode(), api_key.encode()):
            return SERVICE_KEY
        raise AuthError("wrong X-API-Key")
    if authorization and verifier is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be `Bearer <token>`")
        return verifier.verify(token.strip())
    wanted = " or ".join(
        w for w, on in (("X-API-Key", api_key), ("a bearer token", verifier)) if on
    )
    raise AuthError(f"missing credentials: send {wanted}")
