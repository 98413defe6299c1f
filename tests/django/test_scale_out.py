"""Scale-out: two Daphne processes of the demo on a real redis-server with channels_redis.

A tab on each process follows the same request: both get every token and the gateway sees one
upstream connection. Then the pump's process is killed mid-stream: the other process takes the
request over (reconnect API + last_seq) and, once the killed process is back, its tab resumes:
neither tab loses or repeats anything.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from djmr_demo import Demo, demo_env, gateway_final, scripted_env, start_demo
from playwright.sync_api import Page

from support import Gateway, Process, free_port

pytestmark = [pytest.mark.redis, pytest.mark.browser]

WORDS = " ".join(f"token{i}" for i in range(90))
DONE = ".mr-assistant[data-state=done]"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert Path(server).exists(), "redis-server is missing: run `make setup`"
    port = free_port()
    proc = Process.start([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"])
    proc.wait_for("Ready to accept connections", timeout=20)
    yield f"redis://127.0.0.1:{port}/0"
    proc.stop()


@pytest.fixture(scope="module")
def cluster(gateway: Gateway, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Demo]]:
    db = tmp_path_factory.mktemp("scale_out") / "db.sqlite3"
    env = demo_env(gateway, db, REDIS_URL=redis_url, MODELRIVER_PUMP_LOCK_TTL="3",
                   **scripted_env(tokens_per_second=25, text=WORDS))
    servers = [start_demo(env), start_demo(env)]
    yield servers
    for server in servers:
        server.stop()


def streaming_text_longer_than(page: Page, n: int) -> None:
    page.wait_for_function(
        "(n) => (document.querySelector('.mr-assistant[data-state=streaming] .mr-text')?.textContent.length || 0) > n",
        arg=n, timeout=20_000)


def two_tabs(browser: Any, cluster: list[Demo], prompt: str) -> tuple[Any, Page, Page, str]:
    """Tab 1 starts a request on process 1; tab 2 (same session) follows it on process 2."""
    first, second = cluster
    context = browser.new_context()
    tab1 = context.new_page()
    tab1.goto(first.url + "/")
    tab1.fill("textarea.mr-input", prompt)
    tab1.click("button.mr-send")
    streaming_text_longer_than(tab1, 20)
    tab2 = context.new_page()
    tab2.goto(second.url + "/")  # another origin: it finds the session's request on the server
    tab2.wait_for_selector(".mr-assistant[data-resumed=true]")
    channel_id = tab1.locator(".mr-assistant").last.get_attribute("data-channel-id")
    assert tab2.locator(".mr-assistant[data-resumed=true]").get_attribute("data-channel-id") == channel_id
    return context, tab1, tab2, channel_id


def test_both_processes_get_every_token_from_one_upstream(browser: Any, cluster: list[Demo],
                                                          gateway: Gateway) -> None:
    context, tab1, tab2, channel_id = two_tabs(browser, cluster, "scale out")
    tab1.wait_for_selector(DONE, timeout=30_000)
    tab2.wait_for_selector(DONE, timeout=30_000)
    log = gateway.request_log(channel_id)
    assert (log["sockets"], log["joins"]) == (1, 1)
    assert gateway_final(gateway, channel_id)["content"] == WORDS
    assert tab1.locator(".mr-assistant").last.get_attribute("data-streamed") == WORDS
    assert tab2.locator(".mr-assistant[data-resumed=true]").get_attribute("data-streamed") == WORDS
    context.close()


def test_killing_the_pump_process_hands_the_request_over(browser: Any, cluster: list[Demo],
                                                         gateway: Gateway) -> None:
    context, tab1, tab2, channel_id = two_tabs(browser, cluster, "survive a crash")
    streaming_text_longer_than(tab2, 120)
    first = cluster[0]
    first.stop(signal.SIGKILL)  # the pump's process dies mid-stream
    tab2.wait_for_selector(".mr-assistant[data-resumed=true][data-state=done]", timeout=30_000)
    second_output = cluster[1].process.output
    assert f"taking over the pump of {channel_id}" in second_output
    log = gateway.request_log(channel_id)
    assert log["sockets"] == 2  # the dead process's upstream, then the takeover's: never two at once
    assert tab2.locator(".mr-assistant[data-resumed=true]").get_attribute("data-streamed") == WORDS
    # The killed process comes back on its port; its tab reconnects (fresh token) and catches up.
    cluster[0] = start_demo(first.env, port=first.port)
    tab1.wait_for_selector(DONE, timeout=30_000)
    assert tab1.locator(".mr-assistant").last.get_attribute("data-streamed") == WORDS
    assert gateway_final(gateway, channel_id)["content"] == WORDS
    context.close()

