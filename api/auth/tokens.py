"""Bearer JWTs, verified with PyJWT.

HS256 tokens are checked with `auth.jwt_secret`; RS256 and ES256 tokens with the public key of
a JWKS file, chosen by the token's `kid`. The algorithm a key accepts is fixed by the key itself
(an HMAC secret only HS256, an RSA key only RS256, a P-256 key only ES256), so a token cannot
choose how it is verified: `alg: none`, an HS256 token signed with a published RSA key, or an
RS256 token without a matching key are all refused. `exp` is required; `aud` and `iss` are
checked when configured; a small leeway absorbs clock skew.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from mcp.errors import Unauthenticated
from mcp.settings import AuthSettings

ASYMMETRIC = frozenset({"RS256", "ES256"})


class TokenRefused(Unauthenticated):
    """A JWT that does not verify; `reason` is a bounded label for the audit counters."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Key:
    algorithm: str
    key: Any


def load_jwks(path: str) -> dict[str, _Key]:
    """kid -> public key of a JWKS file; only RSA (RS256) and EC P-256 (ES256) keys."""
    data = json.loads(Path(path).read_text())
    keys: dict[str, _Key] = {}
    for entry in data.get("keys", []):
        jwk = jwt.PyJWK(entry)
        if jwk.algorithm_name not in ASYMMETRIC:
            raise ValueError(f"JWKS key {entry.get('kid')!r}: only RS256 and ES256 keys are used")
        keys[str(entry.get("kid", ""))] = _Key(jwk.algorithm_name, jwk.key)
    return keys


class TokenVerifier:
    def __init__(self, auth: AuthSettings) -> None:
        self.auth = auth
        self.jwks = load_jwks(auth.jwks_file) if auth.jwks_file else {}
        required = ["exp"]
        if auth.jwt_audience:
            required.append("aud")
        if auth.jwt_issuer:
            required.append("iss")
        self._options: Any = {"require": required}

    @property
    def enabled(self) -> bool:
        return bool(self.auth.jwt_secret or self.jwks)

    def _key_for(self, header: dict[str, Any]) -> _Key:
        alg = header.get("alg")
        if alg == "HS256" and self.auth.jwt_secret:
            return _Key("HS256", self.auth.jwt_secret)
        if alg in ASYMMETRIC and self.jwks:
            kid = header.get("kid")
            key = self.jwks.get(str(kid)) if kid is not None else None
            if key is None and kid is None and len(self.jwks) == 1:
                key = next(iter(self.jwks.values()))
            if key is None:
                raise TokenRefused(f"no key with kid {kid!r}", "unknown_kid")
            if key.algorithm == alg:
                return key
        raise TokenRefused(f"algorithm {alg!r} is not accepted", "algorithm")

    def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused("malformed token", "malformed") from exc
        key = self._key_for(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.auth.jwt_audience,
                issuer=self.auth.jwt_issuer,
                leeway=self.auth.jwt_leeway_s,
                options=self._options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("the token has expired", "expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the token lacks the {exc.claim!r} claim", "missing_claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRefused("the token is for another audience", "audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRefused("the token is from another issuer", "issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRefused("the token's signature does not verify", "signature") from exc
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"invalid token: {exc}", "invalid") from exc
        return claims
