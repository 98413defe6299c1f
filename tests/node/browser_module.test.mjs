// Unit tests of the browser module (core/src/modelriver/browser/modelriver-link.js) against
// literal Phoenix v2 frames, with a manual clock, a scripted WebSocket and an in-memory storage.
// Run by tests/core/test_browser_module.py (`node --test`).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  PartialJson, Persistence, PhoenixLink, RequestState, RequestStream, socketEndpoint,
} from "../../core/src/modelriver/browser/modelriver-link.js";

const TOPIC = "ai_response:p1:c1";
const REQUEST = { channel_id: "c1", ws_token: "tok-1", websocket_url: "ws://gw.test/socket", websocket_channel: TOPIC };

class Clock {
  constructor() {
    this.t = 1_000_000;
    this.timers = new Map();
    this.ids = 0;
  }
  now() { return this.t; }
  setTimeout(fn, ms) {
    this.ids += 1;
    this.timers.set(this.ids, { at: this.t + ms, fn, id: this.ids });
    return this.ids;
  }
  clearTimeout(id) { this.timers.delete(id); }
  /** Move time forward by `ms`, running each timer at its due time, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.values()].filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers.delete(due.id);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
  }
}

/** A WebSocket the test plays the server of. Every instance is kept in `Sockets.all`. */
function socketClass() {
  class Socket {
    static all = [];
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      Socket.all.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code) { this.closedWith = code ?? 1005; this.readyState = 3; }
    // the server's side
    accept() { this.readyState = 1; this.onopen?.({}); }
    refuse() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
    frames(event) { return this.sent.filter((f) => f[3] === event); }
    get lastJoin() { return this.frames("phx_join").at(-1); }
  }
  return Socket;
}

class MemoryStorage {
  constructor() { this.map = new Map(); }
  get length() { return this.map.size; }
  key(i) { return [...this.map.keys()][i] ?? null; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

function setup(options = {}) {
  const clock = new Clock();
  const Socket = socketClass();
  const storage = new MemoryStorage();
  const persistence = options.persistence === false ? null
    : new Persistence({ storage, progressStorage: options.progressStorage || storage, clock });
  const stream = new RequestStream(options.request || REQUEST, {
    persistence, WebSocket: Socket, clock, coalesce: options.coalesce ?? true, saveEveryMs: options.saveEveryMs ?? 0,
  });
  const seen = { changes: [], events: [] };
  stream.on("change", (c, m) => seen.changes.push({ c, m }));
  for (const name of ["connecting", "connected", "disconnected", "channel_joined", "channel_error"]) {
    stream.on(name, (arg) => seen.events.push(arg === undefined ? name : [name, arg]));
  }
  return { clock, Socket, storage, persistence, stream, seen };
}

/** Start, open the socket and answer the join ok. Returns the socket. */
function joined(ctx) {
  ctx.stream.start();
  const ws = ctx.Socket.all.at(-1);
  ws.accept();
  const join = ws.lastJoin;
  ws.push([join[0], join[1], TOPIC, "phx_reply", { status: "ok", response: {} }]);
  return ws;
}

function tokens(ws, seq, data, extra = {}) {
  ws.push([ws.lastJoin[0], null, TOPIC, "tokens", { seq, data, ...extra }]);
}

// -- the Phoenix link --------------------------------------------------------------------------

test("the socket URL and the join frame are Phoenix v2's, with the token and coalesce", () => {
  assert.equal(socketEndpoint("wss://h/x/", "a b"), "wss://h/x/socket/websocket?token=a%20b&vsn=2.0.0");
  assert.equal(socketEndpoint("ws://h/socket", "t"), "ws://h/socket/websocket?token=t&vsn=2.0.0");
  const ctx = setup();
  ctx.stream.start();
  const ws = ctx.Socket.all[0];
  assert.equal(ws.url, "ws://gw.test/socket/websocket?token=tok-1&vsn=2.0.0");
  ws.accept();
  assert.deepEqual(ws.sent, [["1", "1", TOPIC, "phx_join", { coalesce: true }]]);
  const plain = setup({ coalesce: false });
  plain.stream.start();
  plain.Socket.all[0].accept();
  assert.deepEqual(plain.Socket.all[0].lastJoin[4], {});
});

test("a join reply is matched by ref: another ref's reply is dropped, ours joins (queue step done)", () => {
  const ctx = setup();
  ctx.stream.start();
  const ws = ctx.Socket.all[0];
  ws.accept();
  ws.push(["7", "7", TOPIC, "phx_reply", { status: "ok", response: {} }]);
  ws.push(["1", "1", "ai_response:other", "phx_reply", { status: "ok", response: {} }]);
  assert.ok(!ctx.seen.events.includes("channel_joined"));
  assert.equal(ctx.stream.state.steps[0].status, "pending");
  ws.push(["1", "1", TOPIC, "phx_reply", { status: "ok", response: {} }]);
  assert.ok(ctx.seen.events.includes("channel_joined"));
  assert.equal(ctx.stream.state.steps[0].status, "success");
});

test("messages of another join_ref are dropped; null and the current join_ref are taken", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ws.push(["99", null, TOPIC, "tokens", { seq: 1, data: "stale" }]);
  ws.push([null, null, TOPIC, "tokens", { seq: 2, data: "a" }]);
  ws.push(["1", null, TOPIC, "tokens", { seq: 3, data: "b" }]);
  ws.push(["1", null, "ai_response:other", "tokens", { seq: 4, data: "x" }]);
  assert.equal(ctx.stream.state.text, "ab");
  assert.equal(ctx.stream.lastSeq, 3);
});

test("a join without a reply times out: leave, then rejoin with phoenix.js's backoff 1, 2, 5, 10, 10 s", () => {
  const ctx = setup();
  ctx.stream.start();
  const ws = ctx.Socket.all[0];
  const start = ctx.clock.now();
  ws.accept();
  const joinsAt = [];
  const before = ws.sent.length;
  ws.send = (text) => {
    const f = JSON.parse(text);
    ws.sent.push(f);
    if (f[3] === "phx_join") joinsAt.push(ctx.clock.now() - start);
    if (f[3] === "heartbeat") ws.push([null, f[1], "phoenix", "phx_reply", { status: "ok", response: {} }]);
  };
  ctx.clock.advance(10_000);
  assert.deepEqual(ws.sent.slice(before)[0], ["1", "2", TOPIC, "phx_leave", {}]);
  assert.ok(ctx.seen.events.some((e) => e[0] === "channel_error" && e[1] === "join timed out"));
  ctx.clock.advance(68_001); // to just after the fifth rejoin
  // each join waits 10 s for its reply, then the rejoin delay
  assert.deepEqual(joinsAt, [11_000, 23_000, 38_000, 58_000, 78_000]);
  assert.equal(ctx.Socket.all.length, 1, "a join timeout never drops the socket");
  // a late reply to a timed-out join binds nothing
  const [old] = ws.frames("phx_join");
  ws.push([old[0], old[1], TOPIC, "phx_reply", { status: "ok", response: {} }]);
  assert.ok(!ctx.seen.events.includes("channel_joined"));
  // the current one does, and resets the backoff
  const current = ws.lastJoin;
  ws.push([current[0], current[1], TOPIC, "phx_reply", { status: "ok", response: {} }]);
  assert.ok(ctx.seen.events.includes("channel_joined"));
  assert.equal(ctx.stream.link.rejoinTries, 0);
});

test("phx_error rejoins the channel on the same socket, with {last_seq}", () => {
  const ctx = setup();
  const ws = joined(ctx);
  tokens(ws, 1, "Hel");
  tokens(ws, 2, "lo");
  ws.push(["1", "1", TOPIC, "phx_error", {}]);
  assert.ok(ctx.seen.events.some((e) => e[0] === "channel_error" && e[1] === "channel crashed"));
  assert.equal(ws.closedWith, null, "the socket stays");
  ctx.clock.advance(999);
  assert.equal(ws.frames("phx_join").length, 1);
  ctx.clock.advance(1);
  assert.deepEqual(ws.lastJoin, ["2", "2", TOPIC, "phx_join", { coalesce: true, last_seq: 2 }]);
  assert.equal(ctx.Socket.all.length, 1);
  ws.push(["2", "2", TOPIC, "phx_reply", { status: "ok", response: {} }]);
  // a phx_error of an older join changes nothing
  const errors = ctx.seen.events.filter((e) => e[0] === "channel_error").length;
  ws.push(["1", "1", TOPIC, "phx_error", {}]);
  ctx.clock.advance(20_000);
  assert.equal(ctx.seen.events.filter((e) => e[0] === "channel_error").length, errors);
  assert.equal(ws.frames("phx_join").length, 2);
});

test("a missing heartbeat reply drops the socket and reconnects; a reply keeps it", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ctx.clock.advance(30_000);
  const [hb] = ws.frames("heartbeat");
  assert.deepEqual(hb, [null, "2", "phoenix", "heartbeat", {}]);
  ws.push([null, "2", "phoenix", "phx_reply", { status: "ok", response: {} }]);
  ctx.clock.advance(30_000);
  assert.equal(ws.frames("heartbeat").length, 2);
  assert.equal(ws.closedWith, null);
  ctx.clock.advance(30_000); // the second heartbeat was never answered
  assert.notEqual(ws.closedWith, null);
  assert.ok(ctx.seen.events.some((e) => e[0] === "disconnected" && e[1].opened === true));
  assert.equal(ctx.Socket.all.length, 1);
  ctx.clock.advance(10); // reconnect backoff's first step
  assert.equal(ctx.Socket.all.length, 2);
});

test("reconnects back off 10, 50, 100, 150, 200, 250, 500, 1000, 2000 then 5000 ms; an open resets it", () => {
  const ctx = setup();
  ctx.stream.start();
  const delays = [];
  let last = ctx.clock.now();
  for (let i = 0; i < 11; i += 1) {
    ctx.Socket.all.at(-1).refuse();
    const count = ctx.Socket.all.length;
    while (ctx.Socket.all.length === count) ctx.clock.advance(1);
    delays.push(ctx.clock.now() - last);
    last = ctx.clock.now();
  }
  assert.deepEqual(delays, [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]);
  assert.equal(ctx.seen.events.filter((e) => e[0] === "disconnected").at(-1)[1].failedOpens, 11);
  ctx.Socket.all.at(-1).accept();
  ctx.Socket.all.at(-1).drop();
  const count = ctx.Socket.all.length;
  ctx.clock.advance(10);
  assert.equal(ctx.Socket.all.length, count + 1);
});

test("after a reconnect the rejoin carries last_seq and a replay from the start is deduped by seq", () => {
  const ctx = setup();
  let ws = joined(ctx);
  tokens(ws, 1, "one ");
  tokens(ws, 2, "two ");
  ws.drop();
  ctx.clock.advance(10);
  ws = ctx.Socket.all.at(-1);
  ws.accept();
  assert.deepEqual(ws.lastJoin[4], { coalesce: true, last_seq: 2 });
  ws.push([ws.lastJoin[0], ws.lastJoin[1], TOPIC, "phx_reply", { status: "ok", response: {} }]);
  // a server that replays everything anyway
  tokens(ws, 1, "one ");
  tokens(ws, 2, "two ");
  tokens(ws, 3, "three");
  assert.equal(ctx.stream.state.text, "one two three");
  assert.equal(ctx.stream.link.duplicates, 2);
});

test("coalesced tokens ({seq, from_seq, data}) append once and advance last_seq", () => {
  const ctx = setup();
  const ws = joined(ctx);
  tokens(ws, 1, "a");
  tokens(ws, 4, "bcd", { from_seq: 2 });
  tokens(ws, 3, "c");
  assert.equal(ctx.stream.state.text, "abcd");
  assert.equal(ctx.stream.lastSeq, 4);
});

test("a refused join ends the request with its reason", () => {
  const ctx = setup();
  ctx.stream.start();
  const ws = ctx.Socket.all[0];
  ws.accept();
  ws.push(["1", "1", TOPIC, "phx_reply", { status: "error", response: { reason: "unauthorized_project_access" } }]);
  assert.ok(ctx.seen.events.some((e) => e[0] === "channel_error" && e[1] === "unauthorized_project_access"));
  assert.equal(ctx.stream.state.result.status, "error");
  assert.equal(ctx.stream.state.error, "join refused: unauthorized_project_access");
  assert.notEqual(ws.closedWith, null);
});

// -- terminal rules, steps, failover (core's RequestState) -----------------------------------

for (const [payload, kind] of [
  [{ status: "success" }, "success"], [{ status: "SUCCESS" }, "success"], [{ status: "ok" }, "success"],
  [{ status: "weird", meta: { status: "success" } }, "success"], [{ status: "completed" }, "completed"],
  [{ status: "cancelled" }, "error"], [{ status: "error", error: { message: "boom" } }, "error"],
]) {
  test(`a ${JSON.stringify(payload)} response ends the request as ${kind}, closes and never reconnects`, () => {
    const ctx = setup();
    const ws = joined(ctx);
    tokens(ws, 1, "partial");
    ws.push(["1", null, TOPIC, "response", { seq: 2, channel_id: "c1", ...payload }]);
    const state = ctx.stream.state;
    assert.equal(state.done, true);
    assert.equal(state.status, kind);
    assert.deepEqual(state.result, { seq: 2, channel_id: "c1", ...payload });
    const last = ctx.seen.changes.at(-1).c;
    assert.equal(last.done, true);
    assert.equal(ws.frames("phx_leave").length, 1);
    assert.equal(ws.closedWith, 1000);
    if (kind === "error") {
      assert.equal(state.error, payload.error ? "boom" : "request ended with status 'cancelled'");
      assert.deepEqual(state.steps.map((s) => [s.id, s.status, s.errorMessage]), [
        ["queue", "success", null], ["process", "error", state.error], ["receive", "error", state.error],
        ["complete", "error", state.error]]);
    } else {
      assert.ok(state.steps.every((s) => s.status === "success"));
    }
    tokens(ws, 3, " late"); // after the end: nothing
    assert.equal(state.text, "partial");
    ctx.clock.advance(600_000);
    assert.equal(ctx.Socket.all.length, 1);
  });
}

test("ai_generated is intermediate: process done, a backend step waits; completed then ends it", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ws.push(["1", null, TOPIC, "response", { seq: 1, status: "ai_generated", data: { reply: "hi" },
    meta: { duration_ms: 1234 } }]);
  const state = ctx.stream.state;
  assert.equal(state.done, false);
  assert.equal(state.status, "awaiting_callback");
  assert.deepEqual(state.intermediate.data, { reply: "hi" });
  assert.deepEqual(state.steps.map((s) => [s.id, s.status, s.name, s.duration]), [
    ["queue", "success", "Queueing request", null], ["process", "success", "Processing AI request", 1234],
    ["backend", "pending", "Waiting for backend callback...", null], ["receive", "pending", "Waiting for response", null],
    ["complete", "pending", "Response received", null]]);
  assert.equal(ws.closedWith, null, "the socket stays open while the backend works");
  ws.push(["1", null, TOPIC, "response", { seq: 2, status: "completed", data: { reply: "hi", ticket: 1 } }]);
  assert.equal(state.done, true);
  assert.deepEqual(state.steps.map((s) => [s.id, s.status, s.name]), [
    ["queue", "success", "Queueing request"], ["process", "success", "Processing AI request"],
    ["backend", "success", "Backend processed"], ["receive", "success", "Waiting for response"],
    ["complete", "success", "Response received"]]);
});

test("success after ai_generated names the backend step 'No backend processing needed'", () => {
  const state = new RequestState("c1");
  state.feed("response", { status: "ai_generated" });
  const change = state.feed("response", { status: "success", content: "x" });
  assert.equal(change.done, true);
  assert.deepEqual(state.steps.find((s) => s.id === "backend").name, "No backend processing needed");
});

test("an error event ends the request with its message; the steps turn to error", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ws.push(["1", null, TOPIC, "error", { seq: 1, message: "provider down" }]);
  const state = ctx.stream.state;
  assert.deepEqual(state.result, { status: "error", channel_id: "c1", error: { message: "provider down" } });
  assert.equal(state.error, "provider down");
  assert.equal(state.steps.find((s) => s.id === "complete").status, "error");
});

test("failover with reset: true restarts the text; reset: false keeps it; both leave a note", () => {
  const state = new RequestState("c1");
  state.feed("tokens", { seq: 1, data: "first try" });
  let change = state.feed("status", { seq: 2, status: "failover", from: "openai", to: "anthropic", reason: "429",
    reset: true });
  assert.deepEqual([change.text, change.reset, change.status], [true, true, true]);
  assert.equal(state.text, "");
  assert.equal(state.attempt, 1);
  assert.deepEqual(state.notes, [{ kind: "failover", from: "openai", to: "anthropic", reason: "429", reset: true,
    seq: 2 }]);
  state.feed("tokens", { seq: 3, data: "second" });
  change = state.feed("status", { seq: 4, status: "failover", from: "anthropic", reset: false });
  assert.deepEqual([change.text, change.reset], [false, false]);
  assert.equal(state.text, "second");
  assert.equal(state.attempt, 1);
  assert.equal(state.notes[1].to, null);
  assert.equal(state.status, "failover");
  state.feed("tokens", { seq: 5, data: " more" });
  assert.equal(state.text, "second more");
  assert.equal(state.status, "streaming");
});

test("tool calls become notes; textSince gives the deltas after a position; malformed tokens end the request", () => {
  const state = new RequestState("c1");
  const change = state.feed("tool_call", { seq: 1, name: "lookup", arguments: { q: "x" } });
  assert.deepEqual(change.notes, [{ kind: "tool_call", name: "lookup", arguments: { q: "x" }, seq: 1 }]);
  state.feed("tokens", { data: "ab" });
  const at = state.partCount;
  state.feed("tokens", { data: "cd" });
  state.feed("tokens", { data: "" });
  assert.equal(state.textSince(at), "cd");
  assert.equal(state.text, "abcd");
  assert.equal(state.feed("heartbeat", {}).done, false);
  const bad = state.feed("tokens", { data: 5 });
  assert.equal(bad.done, true);
  assert.equal(state.error, "malformed 'tokens' payload");
});

test("the shared instances are returned on the per-token path (no allocation per token)", () => {
  const state = new RequestState("c1");
  state.feed("tokens", { data: "a" });
  assert.equal(state.feed("tokens", { data: "b" }), state.feed("tokens", { data: "c" }));
});

test("a phx_close of the current join before the end fails the request", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ws.push(["0", "0", TOPIC, "phx_close", {}]); // an older join's close: ignored
  assert.equal(ctx.stream.done, false);
  ws.push(["1", "1", TOPIC, "phx_close", {}]);
  assert.equal(ctx.stream.state.error, "the server closed the channel before the request ended");
});

// -- persistence (PROTOCOL §5) -----------------------------------------------------------------

test("the active request is stored on start and cleared with the progress on the terminal response", () => {
  const ctx = setup();
  const ws = joined(ctx);
  assert.deepEqual(JSON.parse(ctx.storage.getItem("modelriver_active_request")), {
    channelId: "c1", wsToken: "tok-1", timestamp: ctx.clock.now(), websocketUrl: "ws://gw.test/socket",
    websocketChannel: TOPIC });
  tokens(ws, 1, "x");
  ctx.stream.saveProgress();
  assert.ok(ctx.storage.getItem("modelriver_progress_c1"));
  ws.push(["1", null, TOPIC, "response", { seq: 2, status: "success" }]);
  assert.equal(ctx.storage.getItem("modelriver_active_request"), null);
  assert.equal(ctx.storage.getItem("modelriver_progress_c1"), null);
});

test("a stored request older than 5 minutes is ignored and removed", () => {
  const clock = new Clock();
  const storage = new MemoryStorage();
  const persistence = new Persistence({ storage, clock });
  persistence.saveActive({ channelId: "c1", wsToken: "t", websocketUrl: "ws://x" });
  persistence.saveProgress("c1", { lastSeq: 3, text: "abc" });
  clock.advance(5 * 60 * 1000);
  assert.equal(persistence.loadActive().channelId, "c1");
  assert.equal(persistence.loadProgress("c1").lastSeq, 3);
  clock.advance(1);
  assert.equal(persistence.loadActive(), null);
  assert.equal(storage.getItem("modelriver_active_request"), null);
  assert.equal(storage.getItem("modelriver_progress_c1"), null);
  storage.setItem("modelriver_active_request", "{not json");
  assert.equal(persistence.loadActive(), null);
});

test("saved progress resumes a request: its text, steps and notes, and a join with {last_seq}", () => {
  const ctx = setup({ saveEveryMs: 250 });
  const ws = joined(ctx);
  tokens(ws, 1, "Hello ");
  ws.push(["1", null, TOPIC, "status", { seq: 2, status: "failover", from: "a", to: "b", reset: false }]);
  tokens(ws, 3, "world");
  assert.equal(ctx.storage.getItem("modelriver_progress_c1"), null, "throttled");
  ctx.clock.advance(250);
  const saved = JSON.parse(ctx.storage.getItem("modelriver_progress_c1"));
  assert.deepEqual([saved.lastSeq, saved.text, saved.notes.length], [3, "Hello world", 1]);
  // the page reloads: a new stream over the same storage
  const Socket = socketClass();
  const again = new RequestStream(REQUEST, { persistence: ctx.persistence, WebSocket: Socket, clock: ctx.clock });
  assert.equal(again.resumed, true);
  assert.equal(again.state.text, "Hello world");
  assert.equal(again.state.steps[0].status, "success");
  assert.equal(again.state.notes[0].kind, "failover");
  again.start();
  Socket.all[0].accept();
  assert.deepEqual(Socket.all[0].lastJoin[4], { coalesce: true, last_seq: 3 });
  // an expired record is not used
  ctx.clock.advance(5 * 60 * 1000 + 1);
  const late = new RequestStream(REQUEST, { persistence: ctx.persistence, WebSocket: Socket, clock: ctx.clock });
  assert.equal(late.resumed, false);
  assert.equal(late.state.text, "");
});

test("expired progress records of other requests are pruned when one is saved", () => {
  const clock = new Clock();
  const storage = new MemoryStorage();
  const persistence = new Persistence({ storage, clock });
  persistence.saveProgress("old", { lastSeq: 1, text: "a" });
  clock.advance(5 * 60 * 1000 + 1);
  persistence.saveProgress("new", { lastSeq: 1, text: "b" });
  assert.deepEqual([...storage.map.keys()], ["modelriver_progress_new"]);
});

test("a fresh token reconnects at once unless the socket is open", () => {
  const ctx = setup();
  ctx.stream.start();
  ctx.Socket.all[0].refuse();
  ctx.stream.updateToken({ wsToken: "tok-2" });
  assert.equal(ctx.Socket.all.length, 2);
  assert.match(ctx.Socket.all[1].url, /token=tok-2&/);
  assert.equal(JSON.parse(ctx.storage.getItem("modelriver_active_request")).wsToken, "tok-2");
  ctx.Socket.all[1].accept();
  ctx.stream.updateToken({ wsToken: "tok-3" });
  assert.equal(ctx.Socket.all.length, 2, "an open socket is kept; the token serves the next reconnect");
});

// -- structured answers: the partial object and its prose ------------------------------------

const DOC = {
  reply: "You said: \"rivers\"\n\n- **one**\n- `two` \\ é 😀", summary: "Rivers flow", sentiment: "positive",
  confidence: 0.875, count: -12, big: 1.5e3, ok: true, off: false, none: null, topics: ["water", "é", ""],
  action_items: [{ task: "read", done: false, tags: [[1, 2], []] }, { task: "swim" }], empty: {},
};

function kindOf(value) {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

// A later partial value is consistent with an earlier one: no field changes type, strings only
// grow, arrays and objects only gain (their complete members never change).
function assertGrows(before, after, where) {
  if (before === null || before === undefined) return;
  assert.equal(kindOf(after), kindOf(before), `${where}: type changed`);
  if (typeof before === "string") assert.ok(after.startsWith(before), `${where}: string shrank`);
  else if (Array.isArray(before)) {
    assert.ok(after.length >= before.length, `${where}: array shrank`);
    before.forEach((item, i) => assertGrows(item, after[i], `${where}[${i}]`));
  } else if (kindOf(before) === "object") {
    for (const key of Object.keys(before)) {
      assert.ok(key in after, `${where}.${key} vanished`);
      assertGrows(before[key], after[key], `${where}.${key}`);
    }
  } else assert.equal(after, before, `${where}: a complete value changed`);
}

test("every prefix of a document parses to a partial value consistent with the final one", () => {
  for (const text of [JSON.stringify(DOC), JSON.stringify(DOC, null, 2), JSON.stringify([DOC, "tail"]),
    JSON.stringify(DOC).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)]) {
    const final = JSON.parse(text);
    let previous = null;
    for (let n = 0; n <= text.length; n += 1) {
      const parser = new PartialJson();
      parser.push(text.slice(0, n));
      const value = parser.value;
      assertGrows(previous, value, `prefix ${n}`);
      assertGrows(value, final, `prefix ${n} vs final`);
      if (value !== null) previous = value;
    }
    assert.deepEqual(previous, final);
  }
});

test("the parser reads appended chunks incrementally to the same values as whole prefixes", () => {
  const text = JSON.stringify(DOC);
  const parser = new PartialJson();
  for (let at = 0; at < text.length; at += 3) {
    parser.push(text.slice(at, at + 3));
    const whole = new PartialJson();
    whole.push(text.slice(0, at + 3));
    assert.deepEqual(parser.value, whole.value);
  }
});

test("what a prefix holds: the string being written, no incomplete number, escape or literal", () => {
  const cases = [
    ['{"reply": "You said: \\"ri', { reply: 'You said: "ri' }], ['{"reply": "a\\', { reply: "a" }],
    ['{"reply": "a\\u00e', { reply: "a" }], ['{"reply": "a\\\\', { reply: "a\\" }], ['{"rep', {}],
    ['{"reply"', {}], ['{"reply": ', {}], ['{"n": 1', {}], ['{"n": 1.5e', {}], ['{"n": 12,', { n: 12 }],
    ['{"ok": tru', {}], ['{"ok": true', { ok: true }], ['[1, [2, ["x', [1, [2, ["x"]]]], ['"abc', "abc"],
    ["12", null], ["", null], ["   ", null], ["Sorry, plain text", null], ['{"a": 1}x', { a: 1 }],
    ['{"a": 1 "b": 2}', { a: 1 }], ['{"a": "\\ud83d', { a: "" }], ['{"a": {}, "b": [], "c": [{', { a: {}, b: [], c: [{}] }],
  ];
  for (const [text, expected] of cases) {
    const parser = new PartialJson();
    parser.push(text);
    assert.deepEqual(parser.value, expected, text);
  }
});

test("a structured request exposes the partial object and its prose, parsed lazily and throttled", () => {
  let now = 0;
  const state = new RequestState("c", { clock: () => now });
  assert.equal(state.partial, null);
  state.feed("status", { status: "started", structured: true, prose: "reply" });
  const text = JSON.stringify(DOC);
  for (let at = 0; at < 40; at += 4) assert.ok(state.feed("tokens", { data: text.slice(at, at + 4) }).partial);
  assert.equal(state.parser, null, "no parse before anyone reads");
  const early = state.prose;
  assert.ok(early.length > 5 && DOC.reply.startsWith(early), early);
  state.feed("tokens", { data: text.slice(40, 60) });
  now = 39;
  assert.equal(state.prose, early, "a read within 40 ms gets the previous parse");
  now = 40;
  assert.equal(state.prose, DOC.reply);
  assert.deepEqual(state.partial, { reply: DOC.reply });
  state.feed("tokens", { data: text.slice(60) });
  now = 80;
  assert.deepEqual(state.partial, DOC, "the whole text parses to the object the response will carry");
  const change = state.feed("response", { status: "success", data: DOC });
  assert.ok(change.partial && change.done);
  assert.deepEqual(state.partial, DOC);
  assert.equal(state.prose, DOC.reply);
});

test("a schema without a prose field has no prose; a text answer's prose is its text", () => {
  const card = new RequestState("c", { clock: null });
  card.feed("status", { status: "started", structured: true, prose: null });
  card.feed("tokens", { data: '{"reply": "not announced", "summary": "s"' });
  assert.equal(card.prose, "");
  assert.deepEqual(card.partial, { reply: "not announced", summary: "s" });
  const text = new RequestState("c");
  assert.equal(text.feed("tokens", { data: '{"reply": "x"}' }).partial, false);
  assert.equal(text.partial, null);
  assert.equal(text.prose, '{"reply": "x"}');
});

test("a failover reset restarts the partial object; reset: false continues it", () => {
  const state = new RequestState("c", { clock: null });
  state.feed("status", { status: "started", structured: true, prose: "reply" });
  state.feed("tokens", { data: '{"reply": "lost' });
  assert.equal(state.prose, "lost");
  assert.ok(state.feed("status", { status: "failover", from: "a", to: "b", reset: true }).partial);
  assert.equal(state.prose, "");
  state.feed("tokens", { data: '{"reply": "kept' });
  assert.equal(state.prose, "kept");
  state.feed("status", { status: "failover", from: "b", to: "c", reset: false, continued_from: 2 });
  state.feed("tokens", { data: ' on"}' });
  assert.equal(state.prose, "kept on");
});

test("the stream's change events carry the partial object and the prose, read lazily", () => {
  const ctx = setup();
  const ws = joined(ctx);
  ws.push([ws.lastJoin[0], null, TOPIC, "status", { seq: 1, status: "started", structured: true, prose: "reply" }]);
  tokens(ws, 2, '{"reply": "Hel');
  tokens(ws, 3, 'lo", "topics": ["a"');
  const last = ctx.seen.changes.at(-1);
  assert.ok(last.c.partial && last.c.text);
  assert.equal(last.m.prose, "Hello");
  assert.deepEqual(last.m.partial, { reply: "Hello", topics: ["a"] });
  assert.equal(last.m.event, "tokens");
});

test("a structured answer's progress resumes as structured, with its prose field", () => {
  const ctx = setup({ saveEveryMs: 100 });
  const ws = joined(ctx);
  ws.push([ws.lastJoin[0], null, TOPIC, "status", { seq: 1, status: "started", structured: true, prose: "answer" }]);
  tokens(ws, 2, '{"reply": "no", "answer": "Hel');
  ctx.clock.advance(100);
  const saved = JSON.parse(ctx.storage.getItem("modelriver_progress_c1"));
  assert.equal(saved.structured, true);
  assert.equal(saved.proseField, "answer");
  const state = new RequestState("c1", { clock: null });
  state.restore(saved);
  state.feed("tokens", { data: 'lo"}' });
  assert.equal(state.prose, "Hello");
  assert.deepEqual(state.partial, { reply: "no", answer: "Hello" });
});
