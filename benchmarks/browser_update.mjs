// The browser module's update for a structured answer (issue 18: under 2 ms for a 4 KB answer).
//
//   node benchmarks/browser_update.mjs [--quick]   prints one JSON object
//
// A ~4 KB chatbot_response answer (escapes, Unicode, arrays of objects) streams through
// RequestState as ~4-character tokens. Two measures:
//   cold:   one update that reads the whole answer at once: a fresh state fed every token, then
//           partial and prose read (the parse after a reload or a failover reset; the worst case).
//   stream: the view reading partial and prose after every token, with no throttle (clock: null):
//           the total time divided by the tokens, i.e. the mean cost of one update while streaming.
// Each runs `rounds` times after a warm-up; the medians and the 95th percentile count.
import { performance } from "node:perf_hooks";

import { RequestState } from "../core/src/modelriver/browser/modelriver-link.js";

const quick = process.argv.includes("--quick");
const rounds = quick ? 30 : 300;

function answer(bytes) {
  const items = [];
  const doc = {
    reply: "", summary: "How rivers build deltas: \"sediment\" settles where the current slows \\ é ✓ 😀",
    sentiment: "positive", confidence: 0.875, topics: ["rivers", "deltas", "sediment", "Unicode: ü"],
    action_items: items,
  };
  let i = 0;
  while (JSON.stringify(doc).length < bytes) {
    doc.reply += `Line ${i}: a river carries **sediment** downstream, \"slowly\"\n- and \`deposits\` it.\n`;
    if (i % 4 === 0) items.push({ task: `Read chapter ${i}`, priority: i % 3, done: false });
    i += 1;
  }
  return doc;
}

const doc = answer(4096);
const text = JSON.stringify(doc);
const tokens = [];
for (let at = 0; at < text.length; at += 4) tokens.push(text.slice(at, at + 4));

function fed(clock) {
  const state = new RequestState("bench", { clock });
  state.feed("status", { status: "started", structured: true, prose: "reply" });
  return state;
}

function cold() {
  const state = fed(null);
  for (const data of tokens) state.feed("tokens", { data });
  const start = performance.now();
  const partial = state.partial;
  const prose = state.prose;
  const elapsed = performance.now() - start;
  if (prose !== doc.reply || JSON.stringify(partial) !== text) throw new Error("wrong partial object");
  return elapsed;
}

function stream() {
  const state = fed(null);
  let prose = "";
  const start = performance.now();
  for (const data of tokens) {
    state.feed("tokens", { data });
    void state.partial;
    prose = state.prose;
  }
  const elapsed = performance.now() - start;
  if (prose !== doc.reply) throw new Error("wrong prose");
  return elapsed / tokens.length;
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

for (let i = 0; i < 10; i += 1) { cold(); stream(); } // warm-up (JIT)
const colds = Array.from({ length: rounds }, cold);
const streams = Array.from({ length: Math.max(5, Math.floor(rounds / 10)) }, stream);
process.stdout.write(JSON.stringify({
  bytes: text.length, tokens: tokens.length, rounds,
  cold_ms: { median: percentile(colds, 0.5), p95: percentile(colds, 0.95) },
  stream_update_ms: { median: percentile(streams, 0.5), p95: percentile(streams, 0.95) },
}) + "\n");
