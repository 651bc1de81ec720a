"""Who may call the API: bearer tokens with scopes, read from the settings, compared in constant time, never logged.

    RECSYS_API_TOKEN=...                          one token with every scope
    RECSYS_API_TOKENS='tok1:events+admin,tok2:read'  several, each with its scopes (read, events, admin)
    RECSYS_API_READS=open|token                   whether reads need a token with the read scope (default open)
    RECSYS_API_CORS_ORIGINS='https://shop.example'   origins a browser may call from (default none: CORS closed)

Without any token the API has no way to tell callers apart, so ``serve_host`` keeps it on loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

READ, EVENTS, ADMIN = "read", "events", "admin"
SCOPES = (READ, EVENTS, ADMIN)
MIN_TOKEN_LENGTH = 16  # shorter secrets are guessable; refused at start
READS = ("open", "token")
LOOPBACK = "127.0.0.1"


class AccessConfigError(ValueError):
    """The token settings are malformed; the message names the setting and the entry, never a token."""


@dataclass(frozen=True)
class ApiAccess:
    """The tokens the API accepts and what reads need."""

    tokens: tuple[tuple[str, frozenset[str]], ...] = ()  # (token, scopes)
    reads_need_token: bool = False
    cors_origins: tuple[str, ...] = field(default=())

    @property
    def configured(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiAccess:
        environ = os.environ if environ is None else environ
        tokens = []
        single = environ.get("RECSYS_API_TOKEN", "").strip()
        if single:
            tokens.append(_token("RECSYS_API_TOKEN", single, frozenset(SCOPES)))
        for position, entry in enumerate(filter(None, (e.strip() for e in environ.get("RECSYS_API_TOKENS", "").split(","))), 1):
            secret, _, scopes = entry.rpartition(":")
            named = f"RECSYS_API_TOKENS entry {position}"
            if not secret:
                raise AccessConfigError(f"{named} has no scopes: write TOKEN:SCOPE+SCOPE with scopes among "
                                        f"{', '.join(SCOPES)}")
            wanted = frozenset(s.strip() for s in scopes.split("+") if s.strip())
            unknown = sorted(wanted - set(SCOPES))
            if unknown or not wanted:
                raise AccessConfigError(f"{named}: unknown scope {', '.join(map(repr, unknown)) or '(none)'}; "
                                        f"expected some of {', '.join(SCOPES)}")
            tokens.append(_token(named, secret.strip(), wanted))
        reads = environ.get("RECSYS_API_READS", "open").strip().lower() or "open"
        if reads not in READS:
            raise AccessConfigError(f"RECSYS_API_READS is {reads!r}; expected one of {', '.join(READS)}")
        if reads == "token" and not tokens:
            raise AccessConfigError("RECSYS_API_READS=token needs a token: set RECSYS_API_TOKEN or RECSYS_API_TOKENS")
        origins = tuple(o.strip() for o in environ.get("RECSYS_API_CORS_ORIGINS", "").split(",") if o.strip())
        return cls(tuple(tokens), reads == "token", origins)

    def scopes_of(self, presented: str) -> frozenset[str] | None:
        """The scopes of a presented token, None when no configured token matches. Every configured token is
        compared, each in constant time, so the answer's timing says nothing about which one nearly matched."""
        found = None
        for secret, scopes in self.tokens:
            if hmac.compare_digest(secret.encode(), presented.encode()):
                found = scopes
        return found

    def requirement(self, scope: str) -> Callable[[Request], Awaitable[None]]:
        """A FastAPI dependency refusing a request without a token of ``scope``: 401 without a valid token, 403
        with a valid one that lacks the scope. Open where no token is configured (loopback only) and, for reads,
        unless reads need a token. A coroutine: it only reads a header, and a plain function would take a worker
        thread per request."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")

        async def check(request: Request) -> None:
            if not self.configured or (scope == READ and not self.reads_need_token):
                return
            kind, _, presented = request.headers.get("authorization", "").partition(" ")
            challenge = {"WWW-Authenticate": "Bearer"}
            if kind.lower() != "bearer" or not presented.strip():
                raise HTTPException(401, f"This needs a bearer token with the {scope!r} scope: send "
                                         "'Authorization: Bearer TOKEN'.", headers=challenge)
            scopes = self.scopes_of(presented.strip())
            if scopes is None:
                raise HTTPException(401, "The bearer token is not valid.", headers=challenge)
            if scope not in scopes:
                raise HTTPException(403, f"The token lacks the {scope!r} scope (it has {', '.join(sorted(scopes))}).")

        return check


def _token(named: str, secret: str, scopes: frozenset[str]) -> tuple[str, frozenset[str]]:
    if len(secret) < MIN_TOKEN_LENGTH:
        raise AccessConfigError(f"{named}: a token needs at least {MIN_TOKEN_LENGTH} characters (generate one with "
                                "'python -c \"import secrets; print(secrets.token_urlsafe(32))\"')")
    return secret, scopes


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_host(host: str, access: ApiAccess) -> tuple[str, str | None]:
    """The address to listen on, and a notice to print when it differs from ``host``: without any token the API
    is open to whoever reaches it, so it listens on loopback only."""
    if access.configured or is_loopback(host):
        return host, None
    return LOOPBACK, (f"No API token is configured (RECSYS_API_TOKEN or RECSYS_API_TOKENS), so the API listens on "
                      f"{LOOPBACK} only, not {host}: anyone who reaches it could call every endpoint.")
