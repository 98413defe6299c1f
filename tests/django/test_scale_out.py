"""Scale-out: two Daphne processes of the demo on a real redis-server with channels_redis.

A tab on each process follows the same request: both get every token and the gateway sees one
upstream request, on ModelRiver and on Realm. Then the pump's process is killed mid-stream. On
ModelRiver the other process takes the request over (reconnect API + last_seq) and, once the
killed process is back, its tab resumes: neither tab loses or repeats anything. On Realm the
request lived in the killed process: the other process ends it with an error, in both tabs.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from djmr_demo import Chat, Demo, demo_env, scripted_env, start_demo, upstreams
from playwright.sync_api import Page

from support import Process, free_port, start_gateway
from support.upstreams import REALM_KEY, Upstream

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
def cluster(request: pytest.FixtureRequest, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Chat]]:
    """Two demo processes on Redis, on the upstream of the test's parameter."""
    tmp = tmp_path_factory.mktemp("scale_out")
    extra = {"REDIS_URL": redis_url, "MODELRIVER_PUMP_LOCK_TTL": "3"}
    realm_gateway = None
    if request.param == "realm":  # the same answer and pace, by config (a Realm call has no metadata)
        config = tmp / "gateway.toml"
        config.write_text(f'[providers.demo-chat]\nmodel = "scripted-chat"\ntokens_per_second = 25\n'
                          f'text = "{WORDS}"\n')
        port = free_port()
        realm_gateway = start_gateway("--config", str(config), "--realm-port", str(port),
                                      "--realm-api-key", REALM_KEY)
        upstream = Upstream("realm", realm_gateway, f"ws://127.0.0.1:{port}")
        env = {**demo_env(realm_gateway, tmp / "db.sqlite3", **extra), **upstream.env()}
        del env["MODELRIVER_API_KEY"]
    else:
        upstream = Upstream("modelriver", request.getfixturevalue("gateway"))
        env = demo_env(upstream.gateway, tmp / "db.sqlite3", **extra,
                       **scripted_env(tokens_per_second=25, text=WORDS))
    servers: list[Demo] = []
    chats: list[Chat] = []
    try:
        servers += [start_demo(env), start_demo(env)]
        chats += [Chat(upstream, server, ()) for server in servers]
        yield chats
    finally:
        # The tests replace a killed process with a restarted one in the list: stop what it holds
        # at the end too (stopping only the two started here left the restarted ones running).
        for server in [*servers, *(chat.demo for chat in chats)]:
            server.stop()
        if realm_gateway is not None:
            realm_gateway.process.stop()


def streaming_text_longer_than(page: Page, n: int) -> None:
    page.wait_for_function(
        "(n) => (document.querySelector('.mr-assistant[data-state=streaming] .mr-text')?.textContent.length || 0) > n",
        arg=n, timeout=20_000)


def two_tabs(browser: Any, cluster: list[Chat], prompt: str) -> tuple[Any, Page, Page, str]:
    """Tab 1 starts a request on process 1; tab 2 (same session) follows it on process 2."""
    first, second = (chat.demo for chat in cluster)
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


@upstreams(fixture="cluster")
def test_both_processes_get_every_token_from_one_upstream(browser: Any, cluster: list[Chat]) -> None:
    prompt = "scale out"
    context, tab1, tab2, channel_id = two_tabs(browser, cluster, prompt)
    tab1.wait_for_selector(DONE, timeout=30_000)
    tab2.wait_for_selector(DONE, timeout=30_000)
    chat = cluster[0]
    log = chat.log(channel_id, prompt)  # Realm: exactly one gateway request for the prompt
    if not chat.upstream.realm:
        assert (log["sockets"], log["joins"]) == (1, 1)
    assert chat.final(channel_id, prompt)["content"] == WORDS
    assert tab1.locator(".mr-assistant").last.get_attribute("data-streamed") == WORDS
    assert tab2.locator(".mr-assistant[data-resumed=true]").get_attribute("data-streamed") == WORDS
    context.close()


@upstreams("modelriver", fixture="cluster",
           why="a takeover resumes through ModelRiver's reconnect API; a Realm request dies with its "
               "process (the next test)")
def test_killing_the_pump_process_hands_the_request_over(browser: Any, cluster: list[Chat]) -> None:
    prompt = "survive a crash"
    context, tab1, tab2, channel_id = two_tabs(browser, cluster, prompt)
    streaming_text_longer_than(tab2, 120)
    first = cluster[0].demo
    first.stop(signal.SIGKILL)  # the pump's process dies mid-stream
    tab2.wait_for_selector(".mr-assistant[data-resumed=true][data-state=done]", timeout=30_000)
    second_output = cluster[1].demo.process.output
    assert f"taking over the pump of {channel_id}" in second_output
    log = cluster[1].log(channel_id, prompt)
    assert log["sockets"] == 2  # the dead process's upstream, then the takeover's: never two at once
    assert tab2.locator(".mr-assistant[data-resumed=true]").get_attribute("data-streamed") == WORDS
    # The killed process comes back on its port; its tab reconnects (fresh token) and catches up.
    cluster[0] = Chat(cluster[0].upstream, start_demo(first.env, port=first.port), ())
    tab1.wait_for_selector(DONE, timeout=30_000)
    assert tab1.locator(".mr-assistant").last.get_attribute("data-streamed") == WORDS
    assert cluster[0].final(channel_id, prompt)["content"] == WORDS
    context.close()


@upstreams("realm", fixture="cluster", why="ModelRiver's takeover resumes the request (the test above)")
def test_killing_the_pump_process_ends_a_realm_request_with_an_error(browser: Any, cluster: list[Chat]) -> None:
    prompt = "die with the process"
    context, tab1, tab2, channel_id = two_tabs(browser, cluster, prompt)
    streaming_text_longer_than(tab2, 120)
    first = cluster[0].demo
    first.stop(signal.SIGKILL)  # the pump's process, and the Realm call it held, die mid-stream
    failed = ".mr-assistant[data-resumed=true][data-state=error]"
    tab2.wait_for_selector(failed, timeout=30_000)
    assert "no longer known upstream" in tab2.locator(failed).inner_text()
    streamed = tab2.locator(failed).get_attribute("data-streamed")
    assert len(streamed) > 120 and WORDS.startswith(streamed)  # what it had, nothing lost or repeated
    assert f"pump of {channel_id} gave up: the request is no longer known upstream" in \
        cluster[1].demo.process.output
    # The gateway stopped the call when the dead process's Realm socket closed (waits for its end).
    assert cluster[1].final(channel_id, prompt)["status"] == "cancelled"
    # The killed process comes back on its port: its tab reconnects and ends the same way.
    cluster[0] = Chat(cluster[0].upstream, start_demo(first.env, port=first.port), ())
    tab1.wait_for_selector(".mr-assistant[data-state=error]", timeout=30_000)
    # It may have shown a token or two more: its process had sent them to it, not yet to Redis.
    shown = tab1.locator(".mr-assistant").last.get_attribute("data-streamed")
    assert shown.startswith(streamed) and WORDS.startswith(shown)
    context.close()
