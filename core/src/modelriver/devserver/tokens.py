"""Socket tokens: HS256 JWTs bound to one channel, the live-socket registry, join rules.

Rules (docs/gateway.md): a token opens only its own channel, by at most one live socket at a
time, and is accepted again (for reconnects) until ``exp`` or ``grace`` seconds after its
request ended (counted from the token's issue when it was issued after the end).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from modelriver.phoenix.topics import channel_topics, parse_topic, topic_refusal

__all__ = [
    "LiveSockets",
    "TokenClaims",
    "TokenIssuer",
    "join_refusal",
    "parse_topic",
    "token_usable",
]

_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims of a ``ws_token``."""

    project_id: str
    channel_id: str
    topic: str
    exp: int
    iat: int
    jti: str


class TokenIssuer:
    """Issues and verifies ``ws_token`` JWTs with a key that lives as long as the gateway.

    Args:
        project_id: the gateway's project UUID (a claim of every token).
        ttl: token lifetime in seconds.
        key: the HMAC key; random by default.
    """

    def __init__(self, project_id: str, *, ttl: int = 300, key: bytes | None = None) -> None:
        self.project_id = project_id
        self.ttl = ttl
        self._key = key or secrets.token_bytes(32)

    def issue(self, channel_id: str, topic: str, *, now: float | None = None) -> str:
        """A fresh token for ``channel_id``'s ``topic``."""
        issued = int(time.time() if now is None else now)
        claims = {"project_id": self.project_id, "channel_id": channel_id, "topic": topic,
                  "iat": issued, "exp": issued + self.ttl, "jti": secrets.token_urlsafe(12)}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str | None, *, now: float | None = None) -> TokenClaims | None:
        """The claims of a valid, unexpired token of this gateway; None otherwise."""
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=[_ALGORITHM],
                options={"require": ["exp", "iat", "jti", "channel_id", "topic", "project_id"],
                         "verify_iat": False, "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        values = (claims.get("project_id"), claims.get("channel_id"), claims.get("topic"),
                  claims.get("jti"))
        if not all(isinstance(v, str) for v in values) or claims["project_id"] != self.project_id:
            return None
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            return None
        if (time.time() if now is None else now) >= exp:
            return None
        return TokenClaims(str(values[0]), str(values[1]), str(values[2]), exp, iat, str(values[3]))


def token_usable(claims: TokenClaims, ended_at: float | None, now: float, grace: float) -> bool:
    """Whether a verified token may open a socket now, given when its request ended.

    Accepted until ``exp``, and after the request ended only for ``grace`` seconds (from the
    end, or from the token's issue when it was issued later, e.g. by the reconnect API).
    """
    if now >= claims.exp:
        return False
    return ended_at is None or now < max(ended_at, claims.iat) + grace


class LiveSockets:
    """Which token (by ``jti``) has a live socket: at most one socket per token."""

    def __init__(self) -> None:
        self._owners: dict[str, object] = {}

    def acquire(self, jti: str, owner: object) -> bool:
        """Claim ``jti`` for ``owner``; False when another socket holds it."""
        current = self._owners.get(jti)
        if current is not None and current is not owner:
            return False
        self._owners[jti] = owner
        return True

    def release(self, jti: str, owner: object) -> None:
        """Give ``jti`` back if ``owner`` holds it."""
        if self._owners.get(jti) is owner:
            del self._owners[jti]

    def __len__(self) -> int:
        return len(self._owners)


def join_refusal(claims: TokenClaims, topic: str) -> str | None:
    """None when the token may join ``topic``, else the refusal reason.

    The rule every server shares (``modelriver.phoenix.topic_refusal``): the token's own topic
    or ``ai_response:<channel>``, spelled as issued; another spelling is ``noncanonical_topic``.
    """
    return topic_refusal(topic, channel_topics(claims.channel_id, claims.topic))
