"""JWT verification: algorithms, required claims, audience, issuer, leeway, key choice."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.auth.guard import Authenticator, Refused
from api.auth.keys import KeyRing, new_key
from api.auth.roles import Role
from api.auth.tokens import TokenRefused, TokenVerifier
from mcp.settings import AuthSettings
from schemas import utcnow

SECRET = "unit-test-secret-0123456789abcdef0123456789"
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks_file(tmp_path: Path) -> str:
    keys = []
    for kid, key, alg in (("r1", RSA, "RS256"), ("e1", EC, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return str(path)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "u1", "project": "alpha", "role": "developer", "exp": time.time() + 60, **extra}


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        verifier.claims(token)
    return caught.value.reason


def test_hs256_needs_exp_and_honours_leeway() -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET, jwt_leeway_s=30))
    assert verifier.claims(jwt.encode(claims(), SECRET))["project"] == "alpha"
    no_exp = {k: v for k, v in claims().items() if k != "exp"}
    assert refused(verifier, jwt.encode(no_exp, SECRET)) == "missing_claim"
    assert refused(verifier, jwt.encode(claims(exp=time.time() - 120), SECRET)) == "expired"
    assert verifier.claims(jwt.encode(claims(exp=time.time() - 10), SECRET))  # within leeway
    assert refused(verifier, jwt.encode(claims(), "another-secret-0123456789abcdef-0123")) == (
        "signature"
    )
    assert refused(verifier, "not-a-token") == "malformed"


def test_alg_none_and_unconfigured_algorithms_are_refused(tmp_path: Path) -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET))
    assert refused(verifier, jwt.encode(claims(), None, algorithm="none")) == "algorithm"
    assert refused(verifier, jwt.encode(claims(), SECRET * 2, algorithm="HS512")) == "algorithm"
    assert refused(verifier, jwt.encode(claims(), RSA, algorithm="RS256")) == "algorithm"


def test_public_key_as_hmac_secret_is_refused(tmp_path: Path) -> None:
    """The classic confusion: an HS256 token signed with the published RSA key."""
    pem = RSA.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode())
    body = _b64(json.dumps(claims()).encode())
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}.{_b64(signature)}"
    only_jwks = TokenVerifier(AuthSettings(jwks_file=jwks_file(tmp_path)))
    assert refused(only_jwks, forged) == "algorithm"
    both = TokenVerifier(AuthSettings(jwt_secret=SECRET, jwks_file=jwks_file(tmp_path)))
    assert refused(both, forged) == "signature"


def test_rs256_and_es256_from_jwks_by_kid(tmp_path: Path) -> None:
    verifier = TokenVerifier(AuthSettings(jwks_file=jwks_file(tmp_path)))
    rs = jwt.encode(claims(), RSA, algorithm="RS256", headers={"kid": "r1"})
    es = jwt.encode(claims(), EC, algorithm="ES256", headers={"kid": "e1"})
    assert verifier.claims(rs)["sub"] == "u1"
    assert verifier.claims(es)["sub"] == "u1"
    unknown = jwt.encode(claims(), RSA, algorithm="RS256", headers={"kid": "r9"})
    assert refused(verifier, unknown) == "unknown_kid"
    # An RS256 header pointing at the EC key: the key decides the algorithm, not the token.
    mismatched = jwt.encode(claims(), RSA, algorithm="RS256", headers={"kid": "e1"})
    assert refused(verifier, mismatched) == "algorithm"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "r1"})
    assert refused(verifier, forged) == "signature"


def test_audience_and_issuer_when_configured() -> None:
    auth = AuthSettings(jwt_secret=SECRET, jwt_audience="autoglm", jwt_issuer="https://idp")
    verifier = TokenVerifier(auth)
    good = claims(aud="autoglm", iss="https://idp")
    assert verifier.claims(jwt.encode(good, SECRET))
    assert refused(verifier, jwt.encode({**good, "aud": "other"}, SECRET)) == "audience"
    assert refused(verifier, jwt.encode({**good, "iss": "https://evil"}, SECRET)) == "issuer"
    assert refused(verifier, jwt.encode(claims(iss="https://idp"), SECRET)) == "missing_claim"


def test_callers_of_tokens_and_keys() -> None:
    ring = KeyRing()
    auth = AuthSettings(
        enabled=True,
        jwt_secret=SECRET,
        api_keys={"static-key": "gamma"},
        bootstrap_admin_key="boot-key",
    )
    authenticator = Authenticator(auth, ring)
    viewer = authenticator.caller(jwt.encode({"sub": "u2", "project": "alpha", "exp": 2e9}, SECRET))
    assert (viewer.project, viewer.role) == ("alpha", Role.VIEWER)  # no role claim: least
    with pytest.raises(Refused):
        authenticator.caller(jwt.encode(claims(role="root"), SECRET))
    assert authenticator.caller("boot-key").role is Role.ADMIN
    assert authenticator.caller("static-key").project == "gamma"

    record, token = new_key("beta", "viewer", "ci", None, "test")
    with pytest.raises(Refused, match="invalid"):
        authenticator.caller(token)  # not yet known to this process
    ring.apply(record)
    assert authenticator.caller(token).project == "beta"
    assert record.prefix in token and record.secret_sha256 not in token
    with pytest.raises(Refused):
        authenticator.caller(token[:-1] + ("A" if token[-1] != "A" else "B"))
    revoked = record.model_copy(update={"revoked_at": utcnow()})
    ring.apply(revoked)
    ring.apply(record)  # a stale create after the revocation changes nothing
    with pytest.raises(Refused, match="revoked"):
        authenticator.caller(token)
    expiring, expired_token = new_key("beta", "viewer", "old", utcnow(), "test")
    ring.apply(expiring)
    with pytest.raises(Refused, match="expired"):
        authenticator.caller(expired_token)


def test_a_verified_token_still_expires() -> None:
    authenticator = Authenticator(
        AuthSettings(enabled=True, jwt_secret=SECRET, jwt_leeway_s=0), KeyRing()
    )
    token = jwt.encode(claims(exp=time.time() + 1), SECRET)
    assert authenticator.caller(token).project == "alpha"
    assert authenticator.caller(token).project == "alpha"  # from the cache
    time.sleep(1.1)
    with pytest.raises(Refused, match="expired"):
        authenticator.caller(token)
