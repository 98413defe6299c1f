// The npm `phoenix` client (phoenix.js 1.8) against `modelriver dev`, driven by
// tests/core/test_gateway_node.py. Each client behaves as ModelRiver's JS SDK does on the wire
// (PROTOCOL §3): its own socket, join `{}`, listen to the channel, push a channel `heartbeat`,
// never close the socket itself after the final response.
//
//   node gateway_client.mjs '<json: [client options, ...]>'
//
// Client options: {url, token, topic, auth: "param" | "subprotocol", scenario: "stream" | "rejoin",
//                  leaveAfterTokens?: n (rejoin: leave after n tokens, then join again)}
// plus, at the top level of a single-object argument, {clients: [...], timeoutMs?}.
//
// The clients run concurrently. Prints exactly one JSON line, {results: [...]}, one result per
// client, in order, then exits 0:
//   {ok: true, protocol, joins: [{status, response, events: [[event, payload], ...], early: [...]}],
//    channelHeartbeat: status, afterFinal: [[event, payload], ...], connectedAfterFinal,
//    serverClosed: [code, ...]}
// or {ok: false, error, ...what was seen}. A run that times out prints what it has and exits 2.

import { Socket } from "phoenix";
import WebSocket from "ws";

const argument = JSON.parse(process.argv[2] || "{}");
const clients = Array.isArray(argument) ? argument : argument.clients;
const timeoutMs = argument.timeoutMs ?? 20000;

const isTerminal = (event, payload) =>
  event === "error" || (event === "response" && payload && payload.status !== "ai_generated");
const hasFinal = (record) => record.events.some(([e, p]) => isTerminal(e, p));

const results = clients.map(() => ({ ok: false, protocol: null, joins: [], channelHeartbeat: null,
  afterFinal: [], connectedAfterFinal: null, serverClosed: [] }));

setTimeout(() => {
  for (const r of results) if (!r.ok && !r.error) r.error = `timed out after ${timeoutMs} ms`;
  process.stdout.write(JSON.stringify({ results }) + "\n");
  process.exit(2);
}, timeoutMs).unref();

async function runClient(options, result) {
  const { url, token, topic } = options;
  const socketOptions = { transport: WebSocket, reconnectAfterMs: () => 50 };
  if ((options.auth || "param") === "param") socketOptions.params = { token };
  else socketOptions.authToken = token;
  const socket = new Socket(url, socketOptions);
  socket.onOpen(() => { result.protocol = socket.conn && socket.conn.protocol; });
  let closing = false; // set before our own disconnect: only closes before it count
  socket.onClose((event) => { if (!closing) result.serverClosed.push(event && event.code); });
  socket.connect();

  // Join `topic` with `{}`, record the join's channel events; resolves once `until(record)`.
  // `early`: events that reach the channel before its join is answered. phoenix.js hands a message
  // with a null join_ref to every channel of the topic, so after leave + join those are the old
  // join's last live events, still in flight when the server processed the leave.
  const join = (until) => new Promise((resolve, reject) => {
    const channel = socket.channel(topic, {});
    const record = { status: null, response: null, events: [], early: [] };
    result.joins.push(record);
    channel.onMessage = (event, payload) => {
      if (!event.startsWith("phx_") && !event.startsWith("chan_reply_")) {
        (record.status === "ok" ? record.events : record.early).push([event, payload]);
        if (until(record)) resolve({ channel, record });
      }
      return payload;
    };
    channel.join()
      .receive("ok", (response) => { record.status = "ok"; record.response = response; })
      .receive("error", (response) => {
        record.status = "error";
        record.response = response;
        reject(new Error(`join refused: ${JSON.stringify(response)}`));
      })
      .receive("timeout", () => reject(new Error("join timed out")));
  });

  const push = (channel, event, payload) => new Promise((resolve, reject) => {
    channel.push(event, payload)
      .receive("ok", () => resolve("ok"))
      .receive("error", (r) => resolve(`error ${JSON.stringify(r)}`))
      .receive("timeout", () => reject(new Error(`${event} push timed out`)));
  });

  const leave = (channel) => new Promise((resolve, reject) => {
    channel.leave()
      .receive("ok", () => resolve("ok"))
      .receive("timeout", () => reject(new Error("leave timed out")));
  });

  try {
    let last;
    if ((options.scenario || "stream") === "rejoin") {
      const wanted = options.leaveAfterTokens ?? 3;
      const tokens = (record) => record.events.filter(([e]) => e === "tokens").length;
      const first = await join((record) => tokens(record) >= wanted || hasFinal(record));
      await leave(first.channel);
      last = await join(hasFinal);
    } else {
      last = await join(hasFinal);
    }
    // After the final: the SDK's channel heartbeat is answered, nothing is re-sent, the socket stays.
    const seen = last.record.events.length;
    result.channelHeartbeat = await push(last.channel, "heartbeat", {});
    result.afterFinal = last.record.events.slice(seen);
    result.connectedAfterFinal = socket.isConnected();
    result.ok = true;
  } catch (error) {
    result.error = String(error && error.stack ? error.stack : error);
  } finally {
    closing = true;
    socket.disconnect();
  }
}

await Promise.all(clients.map((options, i) => runClient(options, results[i])));
process.stdout.write(JSON.stringify({ results }) + "\n");
process.exit(0);
