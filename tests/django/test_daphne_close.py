"""Malformed frames on a real Daphne (the demo): Daphne (autobahn) refuses close codes 1007 and
1009 from applications, so the consumer closes with 4007/4009 there, and the token is free at
once for the reconnect (found by tests/e2e's consumer fuzzing: the close raised, the consumer
crashed with 1011 and its token stayed claimed)."""

from __future__ import annotations

import json

import httpx
import pytest
from djmr_demo import Demo
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from modelriver.types import AsyncRequest


def start(demo: Demo) -> tuple[AsyncRequest, dict[str, str]]:
    """A request, and the headers its socket needs (the session's cookies, as a browser sends them)."""
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        assert http.get("/").status_code == 200
        answer = http.post("/modelriver/start", json={"message": "malformed"}, headers={
            "X-CSRFToken": http.cookies.get("csrftoken") or "", "Referer": demo.url + "/"})
        assert answer.status_code == 200, answer.text
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        return AsyncRequest.from_payload(answer.json()), {"Cookie": cookie}


def test_a_malformed_frame_closes_with_4007_and_frees_the_token(demo: Demo) -> None:
    request, cookie = start(demo)
    for frame in ("not json", b""):
        with connect(request.socket_url, origin=demo.url, open_timeout=10,  # type: ignore[arg-type]
                     additional_headers=cookie) as ws:
            ws.send(frame)
            with pytest.raises(ConnectionClosed) as closed:  # nothing joined: the close comes first
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4007, closed.value
        # the same token opens a socket again at once
        with connect(request.socket_url, origin=demo.url, open_timeout=10,  # type: ignore[arg-type]
                     additional_headers=cookie) as ws:
            ws.send(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
            assert json.loads(ws.recv(timeout=10))[4] == {"status": "ok", "response": {}}
