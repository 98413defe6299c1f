"""Signed webhook delivery with retries and backoff, every attempt recorded.

Signing is ``modelriver.webhooks``' (``encode_body`` + ``signature_headers``): the body is sent
as ``JSON.stringify(body)`` and its ``data`` is what the signature covers. Each attempt is
signed afresh, so its timestamp is current.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelriver.backoff import exponential
from modelriver.webhooks import encode_body, signature_headers

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookSender", "retry_delays", "utc_now"]

logger = logging.getLogger("modelriver.devserver")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds (``2026-01-09T10:00:00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_delays(retries: int, *, first: float = 0.25, cap: float = 8.0) -> Iterator[float]:
    """Seconds to wait before each retry: 0.25, 0.5, 1, 2 ... capped at ``cap``."""
    return itertools.islice(exponential(initial=first, maximum=cap, jitter=0.0), retries)


@dataclass(frozen=True, slots=True)
class WebhookSender:
    """Posts signed webhooks.

    Args:
        client: the shared ``httpx.AsyncClient``.
        secret: the webhook secret.
        retries: retries after a failed attempt (non-2xx, timeout, connection error).
        timeout: seconds per attempt.
        sleep: the sleep function (tests inject a fast one).
    """

    client: httpx.AsyncClient
    secret: str = field(repr=False)
    _: KW_ONLY
    retries: int = 3
    timeout: float = 10.0
    sleep: Callable[[float], Any] = asyncio.sleep

    async def deliver(
        self,
        url: str,
        body: Mapping[str, Any],
        attempts: list[dict[str, Any]],
        *,
        callback_url: str | None = None,
    ) -> bool:
        """POST ``body`` to ``url`` until a 2xx answer or the retries run out.

        Args:
            url: the webhook URL.
            body: the JSON body; its ``data`` is signed.
            attempts: each attempt is appended here as
                ``{url, attempt, status_code, error, at}`` (the request log's list).
            callback_url: sent as ``X-ModelRiver-Callback-Url``.

        Returns:
            True when an attempt got a 2xx answer.
        """
        import httpx

        content = encode_body(body)
        delays = retry_delays(self.retries)
        attempt = 0
        while True:
            attempt += 1
            headers = {"Content-Type": "application/json", "User-Agent": "modelriver-dev",
                       **signature_headers(body, self.secret, callback_url=callback_url)}
            record: dict[str, Any] = {"url": url, "attempt": attempt, "status_code": None,
                                      "error": None, "at": utc_now()}
            attempts.append(record)
            try:
                response = await self.client.post(url, content=content, headers=headers,
                                                   timeout=self.timeout)
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                record["status_code"] = response.status_code
                if 200 <= response.status_code < 300:
                    logger.info("webhook to %s delivered (attempt %d, HTTP %d)", url, attempt,
                                response.status_code)
                    return True
                record["error"] = f"HTTP {response.status_code}"
            delay = next(delays, None)
            if delay is None:
                logger.warning("webhook to %s failed after %d attempt(s): %s", url, attempt,
                               record["error"])
                return False
            logger.info("webhook to %s failed (%s); retry in %.2f s", url, record["error"], delay)
            await self.sleep(delay)
