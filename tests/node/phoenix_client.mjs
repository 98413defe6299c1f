// A real phoenix.js (npm `phoenix`) client for interop tests, printing one JSON line per observation.
//
//   node phoenix_client.mjs <socket url> <token> <topic> [options]
//
// Options:
//   --auth=param|subprotocol  send the token as the `token` param (default, like ModelRiver's SDK)
//                             or as phoenix.js's `authToken` (subprotocol base64url.bearer.phx.*)
//   --heartbeat-ms=N          phoenix heartbeatIntervalMs (default 30000)
//   --min-heartbeats=N        heartbeat replies to see before finishing (default 0)
//   --until=EVENT             finish after this channel event (default "response")
//   --join-payload=JSON       the join params (default {})
//   --push-heartbeat          push a channel `heartbeat` {} after joining, like ModelRiver's SDK
//   --timeout-ms=N            give up after N ms (default 10000)
//   --debug                   phoenix.js's own log on stderr
//
// Lines: {type: "open"}, {type: "joined", response}, {type: "join_error", reason, response},
// {type: "event", event, payload}, {type: "heartbeat_reply", ref, status},
// {type: "channel_heartbeat_reply", status}, {type: "socket_error", message},
// {type: "close", code, reason}, then exactly one final line:
// {type: "done", heartbeats} | {type: "join_error", ...} | {type: "connect_failed", message}
// (exit 0), {type: "unexpected_close"} | {type: "join_timeout"} (exit 1), {type: "timeout"} (exit 2).

import { Socket } from "phoenix";
import WebSocket from "ws";

const [url, token, topic, ...rest] = process.argv.slice(2);
if (!url || !token || !topic) {
  process.stderr.write("usage: node phoenix_client.mjs <socket url> <token> <topic> [options]\n");
  process.exit(64);
}
const options = Object.fromEntries(
  rest.map((arg) => {
    const [key, ...value] = arg.replace(/^--/, "").split("=");
    return [key, value.length ? value.join("=") : "true"];
  }),
);
const auth = options.auth || "param";
const heartbeatMs = Number(options["heartbeat-ms"] || 30000);
const minHeartbeats = Number(options["min-heartbeats"] || 0);
const until = options.until || "response";
const joinPayload = JSON.parse(options["join-payload"] || "{}");
const pushHeartbeat = options["push-heartbeat"] === "true";
const timeoutMs = Number(options["timeout-ms"] || 10000);

let finished = false;
const write = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const emit = (line) => finished || write(line); // nothing after the final line
let opened = false;
let heartbeats = 0;
let sawUntil = false;
let channelHeartbeat = !pushHeartbeat;

const socketOptions = { transport: WebSocket, heartbeatIntervalMs: heartbeatMs };
if (options.debug === "true") {
  const t0 = Date.now();
  socketOptions.logger = (kind, msg, data) =>
    process.stderr.write(`${Date.now() - t0}ms ${kind}: ${msg} ${JSON.stringify(data)}\n`);
}
if (auth === "subprotocol") {
  socketOptions.authToken = token;
} else {
  socketOptions.params = { token };
}
const socket = new Socket(url, socketOptions);

function finish(code, line) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  write(line);
  const exit = () => process.stdout.write("", () => process.exit(code));
  setTimeout(exit, 1000).unref();
  socket.disconnect(exit, 1000, "done");
}

function maybeDone() {
  if (sawUntil && channelHeartbeat && heartbeats >= minHeartbeats) {
    finish(0, { type: "done", heartbeats });
  }
}

const timer = setTimeout(() => finish(2, { type: "timeout", heartbeats, sawUntil, channelHeartbeat }), timeoutMs);

socket.onOpen(() => {
  opened = true;
  emit({ type: "open" });
});
socket.onError((error) => {
  const message = String((error && (error.message || (error.error && error.error.message))) || error);
  emit({ type: "socket_error", message });
  if (!opened) finish(0, { type: "connect_failed", message });
});
socket.onClose((event) => {
  if (finished) return;
  emit({ type: "close", code: event && event.code, reason: event && event.reason });
  if (opened) finish(1, { type: "unexpected_close" });
});
socket.onMessage((message) => {
  if (message.topic === "phoenix" && message.event === "phx_reply") {
    heartbeats += 1;
    emit({ type: "heartbeat_reply", ref: message.ref, status: message.payload.status });
    maybeDone();
  }
});

socket.connect();
const channel = socket.channel(topic, joinPayload);
for (const event of ["tokens", "status", "tool_call", "response", "error"]) {
  channel.on(event, (payload) => {
    emit({ type: "event", event, payload });
    if (event === until) {
      sawUntil = true;
      maybeDone();
    }
  });
}
channel
  .join()
  .receive("ok", (response) => {
    emit({ type: "joined", response });
    if (pushHeartbeat) {
      channel
        .push("heartbeat", {})
        .receive("ok", () => {
          emit({ type: "channel_heartbeat_reply", status: "ok" });
          channelHeartbeat = true;
          maybeDone();
        })
        .receive("error", (response) => emit({ type: "channel_heartbeat_reply", status: "error", response }))
        .receive("timeout", () => emit({ type: "channel_heartbeat_reply", status: "timeout" }));
    }
  })
  .receive("error", (response) => {
    finish(0, { type: "join_error", reason: response && response.reason, response });
  })
  .receive("timeout", () => finish(1, { type: "join_timeout" }));
