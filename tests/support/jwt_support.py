"""A local OAuth2/OIDC issuer for the API's tests: an RSA key pair whose public half is a JWKS
file (what SHOPFEAST_JWT_JWKS_FILE points at), and RS256 tokens signed with the private half."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER, AUDIENCE = "https://idp.test", "shopfeast-api"


def make_issuer(directory: Path):
    """(private key, path of the JWKS file with its public half)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="test-1", use="sig", alg="RS256")
    path = Path(directory) / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return key, path


def token(key, scope: str, **claims) -> str:
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-recs",
        "exp": int(time.time()) + 300,
        "scope": scope,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "test-1"})


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}
