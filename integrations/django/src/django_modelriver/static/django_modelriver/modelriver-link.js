// modelriver-link.js: the browser side of a ModelRiver request, written once.
//
// The Django widget (django_modelriver/static/django_modelriver/modelriver.js) and the Streamlit
// component (streamlit_modelriver/frontend/stream.js) only render; this module speaks the
// protocol. Its source is core/src/modelriver/browser/modelriver-link.js; the two packages ship
// byte-identical copies made by scripts/sync_browser.py, and `make test` fails when one drifts.
//
//   PhoenixLink     one Phoenix Channels v2 socket carrying one channel (PROTOCOL §2): heartbeat
//                   with reply timeout, join with push timeout, reconnect and rejoin backoffs
//                   (phoenix.js's), join_ref matching, rejoin with {last_seq}, seq dedupe, coalesce.
//   RequestState    one request's events folded into text, steps, notes and the response: the
//                   rules of core's modelriver.state.RequestState (PROTOCOL §3, §4), in JavaScript.
//   Persistence     the SDK's `<prefix>active_request` (5-minute expiry) and our progress record
//                   (text, steps, notes and last seq, so a reload rejoins with {last_seq}) (§5).
//   RequestStream   the three together: a request's socket, state and persistence; renderers
//                   subscribe to its changes.
//
// Model output is untrusted text: this module hands it over as strings, never as markup.
// Everything time- or storage-dependent is injectable (clock, WebSocket, storage) for the tests
// in tests/node/browser_module.test.mjs, which drive it with literal frames.
//
// Loading: an ES module. The Streamlit component inlines it ahead of stream.js (components v2
// load inline JavaScript from a Blob URL, where a relative import cannot resolve); the Django tag
// loads it with <script type="module"> before the classic modelriver.js, which finds it on
// globalThis.ModelRiverLink.

export const RECONNECT_MS = [10, 50, 100, 150, 200, 250, 500, 1000, 2000]; // then 5000 (phoenix.js)
export const REJOIN_MS = [1000, 2000, 5000]; // then 10000 (phoenix.js)
export const HEARTBEAT_MS = 30000;
export const PUSH_TIMEOUT_MS = 10000;
export const MAX_AGE_MS = 5 * 60 * 1000; // the SDK ignores a stored request older than 5 minutes
export const STEP_ORDER = Object.freeze(["queue", "process", "backend", "receive", "complete"]);
export const INITIAL_STEPS = Object.freeze([
  ["queue", "Queueing request"],
  ["process", "Processing AI request"],
  ["receive", "Waiting for response"],
  ["complete", "Response received"],
]);

const SUCCESS = new Set(["success", "SUCCESS", "ok"]);
const KNOWN_EVENTS = new Set(["tokens", "status", "response", "error", "tool_call"]);
const OPEN = 1; // WebSocket.OPEN
const defaultClock = typeof performance === "object" && performance !== null ? () => performance.now() : () => Date.now();

/** The real clock; tests pass their own {now, setTimeout, clearTimeout}. */
export const systemClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
});

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The socket URL for a token: `<websocket_url>[/socket]/websocket?token=…&vsn=2.0.0` (PROTOCOL §2). */
export function socketEndpoint(websocketUrl, token) {
  let base = String(websocketUrl).replace(/\/+$/, "");
  if (!base.endsWith("/socket")) base += "/socket";
  return `${base}/websocket?token=${encodeURIComponent(token)}&vsn=2.0.0`;
}

/** The SDK's reading of a response's status: "success", "completed", "ai_generated" or "error". */
export function responseKind(response) {
  if (!isObject(response)) return "error";
  const status = response.status;
  if (SUCCESS.has(status) || (isObject(response.meta) && response.meta.status === "success")) return "success";
  if (status === "completed" || status === "ai_generated") return status;
  return "error";
}

/** An error response's message (null for the other kinds). */
export function errorMessage(response) {
  if (responseKind(response) !== "error") return null;
  const error = isObject(response) ? response.error : null;
  if (typeof error === "string") return error;
  if (isObject(error) && typeof error.message === "string") return error.message;
  if (isObject(response) && typeof response.message === "string") return response.message;
  return `request ended with status ${pythonRepr(isObject(response) ? response.status : response)}`;
}

// A status as core's message shows it (Python's repr of a str), so both say the same words.
function pythonRepr(value) {
  if (typeof value === "string" && !value.includes("'")) return `'${value}'`;
  return value === undefined ? "None" : JSON.stringify(value);
}

function durationOf(response) {
  const value = isObject(response.meta) ? response.meta.duration_ms : undefined;
  return typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : null;
}

function nameOf(value) {
  if (value === null || value === undefined || value === "") return null;
  return typeof value === "string" ? value : String(value);
}

function seqOf(payload) {
  return Number.isInteger(payload.seq) ? payload.seq : null;
}

// ---------------------------------------------------------------------------------------------
// Partial structured output: core's modelriver.partial, in JavaScript.
//
// A small incremental scanner rather than a vendored library: npm's partial-json ships CommonJS
// only (no ES module to copy byte for byte into both packages) and best-effort-json-parser is
// BSD-licensed CommonJS; both also complete a number still being written (`1` that may become
// `1.5`), which core's rule leaves out. The scanner reads each appended chunk once, remembers the
// last place where the prefix can be closed into valid JSON, and the native JSON.parse builds the
// value from that prefix plus its closing brackets: the same result as core's jiter partial mode.

/** Names of an obvious prose field, in order of preference (core's PROSE_FIELDS). */
export const PROSE_FIELDS = Object.freeze(["reply", "answer", "response", "text", "content", "message"]);

/** The prose field of a partial object when no status named it (core's prose_key). */
export function proseKey(value) {
  if (!isObject(value)) return null;
  for (const name of PROSE_FIELDS) if (typeof value[name] === "string") return name;
  return null;
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const NUMBER_CHARS = new Set("0123456789.eE+-");
const LITERALS = { t: "true", f: "false", n: "null" };

/**
 * The value a growing JSON text holds so far. push(more) appends text; value is the partial
 * value: objects and arrays as far as they go, complete fields, the string being written (an
 * incomplete escape left out), no incomplete number or literal; null when nothing is readable.
 * Text that stops being JSON keeps the value read up to that point.
 */
export class PartialJson {
  constructor() {
    this.text = "";
    this.pos = 0;
    this.closers = []; // "}" or "]" per open container
    this.expect = ["value"]; // per level: key, colon, value, after (the root: value, then after)
    this.empty = [true]; // per level: no element yet (a closing bracket may follow)
    this.inString = false;
    this.stringIsKey = false;
    this.stringStart = 0; // index of the opening quote
    this.escaped = false;
    this.token = null; // {kind: "number"|"literal", word} being read
    this.cut = -1; // text[:cut] + closers[:cutDepth] reversed is valid JSON
    this.cutDepth = 0;
    this.broken = false;
    this.cachedAt = -1;
    this.cached = null;
  }

  push(more) {
    if (more) this.text += more;
  }

  get value() {
    if (this.cachedAt === this.text.length) return this.cached;
    this.scan();
    let json = null;
    if (this.inString && !this.stringIsKey && !this.broken) {
      json = this.text.slice(0, this.stringStart) + JSON.stringify(this.openString()) + this.closing(this.closers.length);
    } else if (this.cut >= 0) {
      json = this.text.slice(0, this.cut) + this.closing(this.cutDepth);
    }
    let value = null;
    if (json !== null) {
      try {
        value = JSON.parse(json);
      } catch {
        value = null; // cannot happen for a prefix the scanner accepted; stay safe on odd input
      }
    }
    this.cachedAt = this.text.length;
    this.cached = value;
    return value;
  }

  closing(depth) {
    let out = "";
    for (let i = depth - 1; i >= 0; i -= 1) out += this.closers[i];
    return out;
  }

  // The string being written, decoded, without a trailing incomplete escape or lone high surrogate.
  openString() {
    let body = this.text.slice(this.stringStart + 1);
    const escape = /\\(u[0-9a-fA-F]{0,3})?$/.exec(body);
    if (escape !== null) {
      let slashes = 0; // an escaped backslash ("\\\\") ends no escape
      for (let i = escape.index - 1; i >= 0 && body[i] === "\\"; i -= 1) slashes += 1;
      if (slashes % 2 === 0) body = body.slice(0, escape.index);
    }
    let decoded;
    try {
      decoded = JSON.parse(`"${body}"`);
    } catch {
      return "";
    }
    const last = decoded.charCodeAt(decoded.length - 1);
    return last >= 0xd800 && last <= 0xdbff ? decoded.slice(0, -1) : decoded;
  }

  markCut(at) {
    this.cut = at;
    this.cutDepth = this.closers.length;
  }

  // A value ended at `at` (exclusive): the level now waits for a comma or its closing bracket.
  valueEnded(at) {
    const level = this.expect.length - 1;
    this.expect[level] = "after";
    this.empty[level] = false;
    this.markCut(at);
  }

  scan() {
    const text = this.text;
    const end = text.length;
    let i = this.pos;
    while (i < end && !this.broken) {
      const ch = text[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === "\\") this.escaped = true;
        else if (ch === '"') {
          this.inString = false;
          if (this.stringIsKey) this.expect[this.expect.length - 1] = "colon";
          else this.valueEnded(i + 1);
        }
        i += 1;
        continue;
      }
      if (this.token !== null) {
        const token = this.token;
        if (token.kind === "number" && NUMBER_CHARS.has(ch)) { i += 1; continue; }
        if (token.kind === "literal" && i - token.start < token.word.length) {
          if (ch !== token.word[i - token.start]) { this.broken = true; break; }
          i += 1;
          if (i - token.start === token.word.length) { this.token = null; this.valueEnded(i); }
          continue;
        }
        this.token = null;
        if (token.kind === "number") {
          if (!isNumber(text.slice(token.start, i))) { this.broken = true; break; }
          this.valueEnded(i);
        }
      }
      if (WHITESPACE.has(ch)) { i += 1; continue; }
      const level = this.expect.length - 1;
      const expect = this.expect[level];
      const container = level > 0 ? this.closers[level - 1] : null;
      if (expect === "key") {
        if (ch === '"') this.openStringAt(i, true);
        else if (ch === "}" && this.empty[level]) this.close(i + 1);
        else this.broken = true;
      } else if (expect === "colon") {
        if (ch === ":") this.expect[level] = "value";
        else this.broken = true;
      } else if (expect === "value") {
        if (ch === '"') this.openStringAt(i, false);
        else if (ch === "{" || ch === "[") {
          this.closers.push(ch === "{" ? "}" : "]");
          this.expect.push(ch === "{" ? "key" : "value");
          this.empty.push(true);
          this.markCut(i + 1);
        } else if (ch === "]" && container === "]" && this.empty[level]) this.close(i + 1);
        else if (ch === "-" || (ch >= "0" && ch <= "9")) this.token = { kind: "number", start: i };
        else if (ch in LITERALS) this.token = { kind: "literal", start: i, word: LITERALS[ch] };
        else this.broken = true;
      } else if (container === null) {
        this.broken = true; // text after the top-level value: keep what was read
      } else if (ch === ",") {
        this.expect[level] = container === "}" ? "key" : "value";
      } else if (ch === container) {
        this.close(i + 1);
      } else {
        this.broken = true;
      }
      i += 1;
    }
    this.pos = i;
  }

  openStringAt(i, isKey) {
    this.inString = true;
    this.stringIsKey = isKey;
    this.stringStart = i;
    this.escaped = false;
  }

  close(at) {
    this.closers.pop();
    this.expect.pop();
    this.empty.pop();
    this.valueEnded(at);
  }
}

function isNumber(word) {
  return /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(word);
}

// ---------------------------------------------------------------------------------------------
// Workflow steps (PROTOCOL §4): core's modelriver.steps.StepTracker.

function makeStep(id, name, status = "pending", duration = null, errorMessage = null) {
  return Object.freeze({ id, name, status, duration, errorMessage });
}

function sameStep(a, b) {
  return a.id === b.id && a.name === b.name && a.status === b.status && a.duration === b.duration
    && a.errorMessage === b.errorMessage;
}

export class StepTracker {
  constructor() {
    this.byId = new Map(INITIAL_STEPS.map(([id, name]) => [id, makeStep(id, name)]));
  }

  /** Every step in display order (`backend` sits before `receive`). */
  get steps() {
    return STEP_ORDER.filter((id) => this.byId.has(id)).map((id) => this.byId.get(id));
  }

  /** The join succeeded: queue done. Returns the steps that changed. */
  joined() {
    return this.set([["queue", "success"]]);
  }

  /** A token arrived: process turns loading (when still pending) until the response. */
  streaming() {
    return this.byId.get("process").status === "pending" ? this.set([["process", "loading"]]) : [];
  }

  response(response) {
    const kind = responseKind(response);
    const duration = durationOf(response);
    if (kind === "ai_generated") {
      return [...this.set([["process", "success"]], { duration }),
        ...this.set([["backend", "pending"]], { name: "Waiting for backend callback..." })];
    }
    if (kind === "error") return this.error(errorMessage(response) || "request failed");
    const changed = [...this.set([["queue", "success"]]), ...this.set([["process", "success"]], { duration })];
    if (kind === "completed") changed.push(...this.set([["backend", "success"]], { name: "Backend processed" }));
    else if (this.byId.has("backend")) {
      changed.push(...this.set([["backend", "success"]], { name: "No backend processing needed" }));
    }
    return [...changed, ...this.set([["receive", "success"], ["complete", "success"]])];
  }

  /** The request failed: process, receive and complete turn to error. */
  error(message) {
    return this.set([["process", "error"], ["receive", "error"], ["complete", "error"]], { errorMessage: message });
  }

  /** The request ended without the server's word: the steps still waiting turn to error. */
  fail(message) {
    const waiting = ["process", "receive", "complete"]
      .filter((id) => ["pending", "loading"].includes(this.byId.get(id).status))
      .map((id) => [id, "error"]);
    return this.set(waiting, { errorMessage: message });
  }

  /** Take steps saved earlier (a resumed request). */
  restore(steps) {
    for (const s of steps) {
      if (isObject(s) && typeof s.id === "string") {
        this.byId.set(s.id, makeStep(s.id, String(s.name || s.id), String(s.status || "pending"),
          typeof s.duration === "number" ? s.duration : null,
          typeof s.errorMessage === "string" ? s.errorMessage : null));
      }
    }
  }

  set(changes, { name = null, duration = null, errorMessage: message = null } = {}) {
    const changed = [];
    for (const [id, status] of changes) {
      const old = this.byId.get(id);
      const base = old || makeStep(id, name || id);
      const next = makeStep(id, name || base.name, status, duration ?? base.duration, message);
      if (!old || !sameStep(old, next)) {
        this.byId.set(id, next);
        changed.push(next);
      }
    }
    return changed;
  }
}

// ---------------------------------------------------------------------------------------------
// One request's state: core's modelriver.state.RequestState, fed raw channel events.

/** What one event changed (false/empty: unchanged). The shared instances below are frozen. */
function changes({ text = false, reset = false, steps = [], notes = [], status = false, response = null,
  done = false, partial = false } = {}) {
  return Object.freeze({ text, reset, steps, notes, status, response, done, partial });
}

export const NOTHING = changes();
const TEXT = changes({ text: true });
const TEXT_PARTIAL = changes({ text: true, partial: true });
const STATUS = changes({ status: true });

export class RequestState {
  /**
   * @param {string|null} channelId put in the error response an `error` event makes.
   *
   * Fields: attempt (failover resets so far), status (the last status word: queued, started,
   * failover, streaming once tokens flow, awaiting_callback after ai_generated, then the
   * response's kind or error), notes ({kind: "failover", from, to, reason, reset, seq} and
   * {kind: "tool_call", name, arguments, seq}), intermediate (the ai_generated response),
   * response (the terminal response as received), result (how the request ended: the response,
   * or an error response made from an `error` event or fail()), error (why it failed),
   * structured (the answer is structured output: a status said `structured: true`, or the
   * caller did), proseField (the prose field a status named).
   *
   * Structured answers: `partial` is the object so far, parsed from `text` only when read and
   * changed, at most every `parseIntervalMs` while the request runs (a read in between gets the
   * previous parse) and once at the end; the final response's `data` replaces it. `prose` is its
   * prose field's text ("" when the schema has none: show `partial` as a card only).
   * @param {object} [options] structured: true/false (null: as a status says); clock: () => ms
   *   (null: parse on every read after a change); parseIntervalMs (default 40).
   */
  constructor(channelId = null, { structured = null, clock = defaultClock, parseIntervalMs = 40 } = {}) {
    this.channelId = channelId;
    this.structured = Boolean(structured);
    this.proseField = null;
    this.proseAnnounced = false;
    this.tokenChanges = this.structured ? TEXT_PARTIAL : TEXT;
    this.clock = clock;
    this.parseIntervalMs = parseIntervalMs;
    this.parser = null;
    this.parserParts = 0;
    this.parsed = null;
    this.parsedVersion = "";
    this.parsedAt = -Infinity;
    this.attempt = 0;
    this.status = null;
    this.notes = [];
    this.intermediate = null;
    this.response = null;
    this.result = null;
    this.error = null;
    this.parts = [];
    this.joinedText = "";
    this.joinedCount = 0;
    this.flowing = false; // tokens are plain appends (between the first token and a status or the end)
    this.tracker = new StepTracker();
  }

  get done() {
    return this.result !== null;
  }

  /** The answer streamed so far: the deltas since the last failover reset, joined (cached). */
  get text() {
    const count = this.parts.length;
    if (count !== this.joinedCount) {
      this.joinedText += this.parts.slice(this.joinedCount).join("");
      this.joinedCount = count;
    }
    return this.joinedText;
  }

  /** How many deltas make `text` (a position for textSince). */
  get partCount() {
    return this.parts.length;
  }

  /** The text of the deltas from position `index` on ("" when there are none). */
  textSince(index) {
    if (index <= 0) return this.text;
    return index < this.parts.length ? this.parts.slice(index).join("") : "";
  }

  get steps() {
    return this.tracker.steps;
  }

  /** A structured answer's value so far (null before any, or for a text answer); the final
   * response's data once it arrived. */
  get partial() {
    if (!this.structured) return null;
    const final = this.finalData();
    if (final !== null && final !== undefined) return final;
    const count = this.parts.length;
    const version = `${this.attempt}:${count}`;
    if (version !== this.parsedVersion) {
      const now = this.clock === null ? 0 : this.clock();
      if (this.clock === null || now - this.parsedAt >= this.parseIntervalMs || this.done) {
        if (this.parser === null || this.parserParts > count) {
          this.parser = new PartialJson();
          this.parserParts = 0;
        }
        for (let i = this.parserParts; i < count; i += 1) this.parser.push(this.parts[i]);
        this.parserParts = count;
        this.parsed = this.parser.value;
        this.parsedVersion = version;
        this.parsedAt = now;
      }
    }
    return this.parsed;
  }

  /** The answer as prose: `text` for a text answer; a structured answer's prose field so far. */
  get prose() {
    if (!this.structured) return this.text;
    const value = this.partial;
    if (!isObject(value)) return "";
    const key = this.proseAnnounced ? this.proseField : proseKey(value);
    const prose = key === null ? null : value[key];
    return typeof prose === "string" ? prose : "";
  }

  // The AI's object as a response delivered it (core's _final_data).
  finalData() {
    const response = this.response;
    if (response !== null && responseKind(response) !== "error") {
      if (responseKind(response) !== "completed") return response.data ?? null;
      const ai = response.ai_response;
      if (isObject(ai) && ai.data !== null && ai.data !== undefined) return ai.data;
    }
    return this.intermediate === null ? null : (this.intermediate.data ?? null);
  }

  /** The channel join succeeded; call it on every join. */
  joined() {
    return this.stepChanges(this.tracker.joined());
  }

  /** Fold one channel message in; returns what it changed. */
  feed(event, payload) {
    if (event === "tokens" && isObject(payload) && typeof payload.data === "string") {
      const data = payload.data;
      if (data && this.flowing) { // the hot path: no parse here (`partial` is lazy)
        this.parts.push(data);
        return this.tokenChanges;
      }
      return this.firstToken(data);
    }
    if (!KNOWN_EVENTS.has(event) || this.result !== null) return NOTHING;
    if (!isObject(payload)) return this.endWithError(`malformed '${event}' payload`);
    switch (event) {
      case "tokens":
        return this.endWithError("malformed 'tokens' payload");
      case "status":
        return this.onStatus(payload);
      case "tool_call": {
        const note = Object.freeze({ kind: "tool_call", name: payload.name == null ? "" : String(payload.name),
          arguments: payload.arguments ?? null, seq: seqOf(payload) });
        this.notes.push(note);
        return changes({ notes: [note] });
      }
      case "response":
        return this.onResponse(payload);
      default: { // "error"
        let message = payload.message || payload.error || "request failed";
        if (isObject(message)) message = message.message ?? "request failed";
        return this.endWithError(String(message));
      }
    }
  }

  /** End the request locally (the stream failed); nothing changes once it ended. */
  fail(message) {
    if (this.result !== null) return NOTHING;
    return this.finishWithError(message, this.tracker.fail(message));
  }

  /** What a resumed page needs: {text, steps, notes, status}, and for a structured answer
   * {structured: true, proseField} (the status that said so is not replayed after last_seq). */
  snapshot() {
    const snap = { text: this.text, steps: this.steps, notes: this.notes, status: this.status };
    if (this.structured) {
      snap.structured = true;
      if (this.proseAnnounced) snap.proseField = this.proseField;
    }
    return snap;
  }

  /** Take a snapshot saved earlier. */
  restore({ text, steps, notes, status, structured, proseField } = {}) {
    if (typeof text === "string" && text) {
      this.parts = [text];
      this.joinedText = "";
      this.joinedCount = 0;
      this.parser = null;
    }
    if (structured === true) {
      this.structured = true;
      this.tokenChanges = TEXT_PARTIAL;
      if (proseField === null || typeof proseField === "string") {
        this.proseField = proseField || null;
        this.proseAnnounced = true;
      }
    }
    if (Array.isArray(steps)) this.tracker.restore(steps);
    if (Array.isArray(notes)) this.notes = notes.filter(isObject).map((n) => Object.freeze({ ...n }));
    if (typeof status === "string") this.status = status;
  }

  // A token that is not a plain append: the first after a status, empty, or too late.
  firstToken(data) {
    if (this.result !== null) return NOTHING;
    if (data) this.parts.push(data);
    const status = this.setStatus("streaming");
    const steps = this.tracker.streaming();
    this.flowing = true;
    const partial = this.structured && Boolean(data);
    if (!steps.length) {
      if (data) return status ? changes({ text: true, partial, status: true }) : this.tokenChanges;
      return status ? STATUS : NOTHING;
    }
    return changes({ text: Boolean(data), partial, steps, status });
  }

  onStatus(payload) {
    if (payload.structured === true && !this.structured) {
      this.structured = true;
      this.tokenChanges = TEXT_PARTIAL;
    }
    if ("prose" in payload && this.structured) {
      this.proseField = typeof payload.prose === "string" && payload.prose ? payload.prose : null;
      this.proseAnnounced = true;
    }
    const reset = Boolean(payload.reset);
    if (reset) {
      this.parts = [];
      this.joinedText = "";
      this.joinedCount = 0;
      this.attempt += 1;
    }
    const status = payload.status == null ? "" : String(payload.status);
    if (status !== "streaming") this.flowing = false;
    let notes = [];
    if (status === "failover") {
      const note = Object.freeze({ kind: "failover", from: nameOf(payload.from), to: nameOf(payload.to),
        reason: nameOf(payload.reason), reset, seq: seqOf(payload) });
      this.notes.push(note);
      notes = [note];
    }
    const statusChanged = this.status !== status;
    this.status = status;
    if (!(reset || notes.length)) return statusChanged ? STATUS : NOTHING;
    return changes({ text: reset, reset, notes, partial: reset && this.structured, status: statusChanged });
  }

  onResponse(response) {
    this.flowing = false;
    const steps = this.tracker.response(response);
    const kind = responseKind(response);
    if (kind === "ai_generated") {
      this.intermediate = response;
      return changes({ steps, response, status: this.setStatus("awaiting_callback") });
    }
    this.response = this.result = response;
    if (kind === "error") this.error = errorMessage(response);
    return changes({ steps, response, partial: this.structured, status: this.setStatus(kind), done: true });
  }

  endWithError(message) {
    return this.finishWithError(message, this.tracker.error(message));
  }

  finishWithError(message, steps) {
    this.flowing = false;
    this.error = message;
    this.result = { status: "error", channel_id: this.channelId, error: { message } };
    return changes({ steps, status: this.setStatus("error"), done: true });
  }

  setStatus(status) {
    const changed = this.status !== status;
    this.status = status;
    return changed;
  }

  stepChanges(steps) {
    return steps.length ? changes({ steps }) : NOTHING;
  }
}

// ---------------------------------------------------------------------------------------------
// A Phoenix Channels v2 socket carrying one channel.

export class PhoenixLink {
  /**
   * @param {object} options
   *   url: () => the socket URL (called on each open: the token may have changed);
   *   topic; params: () => the join payload (without last_seq, which the link adds);
   *   lastSeq: resume after this seq; handlers: {state(name, info), joined(response),
   *   refused(reason, response), channelError(reason), channelClosed(), message(event, payload)};
   *   WebSocket, clock, heartbeatMs, timeoutMs: injectable for tests.
   */
  constructor({ url, topic, params = () => ({}), lastSeq = null, handlers = {}, WebSocket: socketClass = null,
    clock = systemClock, heartbeatMs = HEARTBEAT_MS, timeoutMs = PUSH_TIMEOUT_MS }) {
    this.url = url;
    this.topic = topic;
    this.params = params;
    this.lastSeq = Number.isInteger(lastSeq) ? lastSeq : null;
    this.handlers = handlers;
    this.socketClass = socketClass;
    this.clock = clock;
    this.heartbeatMs = heartbeatMs;
    this.timeoutMs = timeoutMs;
    this.ref = 0;
    this.joinRef = null;
    this.channel = "closed"; // joining | joined | errored | closed
    this.ws = null;
    this.closed = false;
    this.tries = 0; // reconnects since the last open
    this.rejoinTries = 0;
    this.failedOpens = 0; // sockets in a row that closed before opening (a refused token, in a browser)
    this.heartbeatRef = null;
    this.duplicates = 0;
    this.timers = { reconnect: null, heartbeat: null, join: null, rejoin: null };
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === OPEN;
  }

  get joined() {
    return this.channel === "joined";
  }

  emit(name, ...args) {
    const handler = this.handlers[name];
    if (handler) handler(...args);
  }

  after(name, ms, fn) {
    this.cancel(name);
    this.timers[name] = this.clock.setTimeout(() => {
      this.timers[name] = null;
      fn();
    }, ms);
  }

  cancel(name) {
    if (this.timers[name] !== null) {
      this.clock.clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }

  nextRef() {
    this.ref += 1;
    return String(this.ref);
  }

  send(frame) {
    if (this.connected) this.ws.send(JSON.stringify(frame));
  }

  /** Open the socket (then join); reconnects with backoff until close(). */
  open() {
    if (this.closed || this.ws) return;
    this.cancel("reconnect");
    this.emit("state", "connecting");
    const WS = this.socketClass || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(this.url());
    } catch {
      this.failedOpens += 1;
      this.emit("state", "disconnected", { opened: false, failedOpens: this.failedOpens, tries: this.tries });
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      ws.opened = true;
      this.tries = 0;
      this.failedOpens = 0;
      this.rejoinTries = 0; // phoenix.js resets the rejoin timer on open
      this.heartbeatRef = null;
      this.emit("state", "connected");
      this.join();
      this.after("heartbeat", this.heartbeatMs, () => this.heartbeat());
    };
    ws.onmessage = (event) => {
      if (this.ws === ws) this.receive(event.data);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.lost(ws);
    };
    ws.onerror = () => {}; // a close follows
  }

  /** The socket went away: forget the channel's join and reconnect (unless closed). */
  lost(ws) {
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    for (const name of ["heartbeat", "join", "rejoin"]) this.cancel(name);
    this.joinRef = null;
    this.heartbeatRef = null;
    if (this.channel !== "closed") this.channel = "errored";
    if (this.closed) return;
    if (!ws.opened) this.failedOpens += 1;
    this.emit("state", "disconnected", { opened: ws.opened, failedOpens: this.failedOpens, tries: this.tries });
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.closed) return;
    const delay = RECONNECT_MS[this.tries] ?? 5000;
    this.tries += 1;
    this.after("reconnect", delay, () => this.open());
  }

  /** Drop the socket and open a new one at once (a fresh token arrived). */
  reconnectNow() {
    if (this.closed) return;
    this.tries = 0;
    const ws = this.ws;
    if (ws) {
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      for (const name of ["heartbeat", "join", "rejoin"]) this.cancel(name);
      this.joinRef = null;
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this.open();
  }

  join() {
    if (!this.connected || this.closed) return;
    this.cancel("rejoin");
    const params = { ...this.params() };
    if (this.lastSeq !== null) params.last_seq = this.lastSeq;
    this.joinRef = this.nextRef();
    this.channel = "joining";
    this.send([this.joinRef, this.joinRef, this.topic, "phx_join", params]);
    this.after("join", this.timeoutMs, () => {
      // phoenix.js leaves the timed-out join (so a late reply binds nothing) and rejoins later.
      this.send([this.joinRef, this.nextRef(), this.topic, "phx_leave", {}]);
      this.emit("channelError", "join timed out");
      this.rejoinLater();
    });
  }

  rejoinLater() {
    this.cancel("join");
    this.channel = "errored";
    const delay = REJOIN_MS[this.rejoinTries] ?? 10000;
    this.rejoinTries += 1;
    this.after("rejoin", delay, () => this.join());
  }

  heartbeat() {
    if (this.heartbeatRef !== null) {
      // No reply within one interval: the connection is dead. Drop it and reconnect.
      const ws = this.ws;
      if (ws) {
        this.lost(ws); // detaches it first: its late close event changes nothing
        try {
          ws.close();
        } catch {
          /* already closed */
        }
      }
      return;
    }
    this.heartbeatRef = this.nextRef();
    this.send([null, this.heartbeatRef, "phoenix", "heartbeat", {}]);
    this.after("heartbeat", this.heartbeatMs, () => this.heartbeat());
  }

  /** One text frame from the server. */
  receive(raw) {
    if (typeof raw !== "string") return; // binary frames carry nothing this channel uses
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!Array.isArray(frame) || frame.length !== 5) return;
    const [joinRef, ref, topic, event, payload] = frame;
    if (topic === "phoenix") {
      if (event === "phx_reply" && ref !== null && ref === this.heartbeatRef) this.heartbeatRef = null;
      return;
    }
    if (topic !== this.topic) return;
    if (event === "phx_reply") {
      if (ref === null || ref !== this.joinRef || this.channel !== "joining") return; // not our join
      this.cancel("join");
      const response = isObject(payload) ? payload.response : undefined;
      if (isObject(payload) && payload.status === "ok") {
        this.channel = "joined";
        this.rejoinTries = 0;
        this.emit("joined", response);
      } else {
        this.channel = "closed";
        const reason = isObject(response) && response.reason ? String(response.reason) : "join failed";
        this.emit("refused", reason, response);
      }
      return;
    }
    if (joinRef !== null && joinRef !== undefined && joinRef !== this.joinRef) return; // a stale join's
    if (event === "phx_error") {
      if (this.channel === "joined" || this.channel === "joining") {
        this.emit("channelError", "channel crashed");
        this.rejoinLater();
      }
      return;
    }
    if (event === "phx_close") {
      this.channel = "closed";
      this.cancel("join");
      this.cancel("rejoin");
      this.emit("channelClosed");
      return;
    }
    if (isObject(payload) && Number.isInteger(payload.seq)) {
      if (this.lastSeq !== null && payload.seq <= this.lastSeq) { // seen already (a replay)
        this.duplicates += 1;
        return;
      }
      this.lastSeq = payload.seq;
    }
    this.emit("message", event, payload);
  }

  /** Leave the channel and close the socket for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const name of Object.keys(this.timers)) this.cancel(name);
    const ws = this.ws;
    if (ws) {
      if (this.channel === "joined") this.send([this.joinRef, this.nextRef(), this.topic, "phx_leave", {}]);
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    this.channel = "closed";
  }
}

// ---------------------------------------------------------------------------------------------
// Persistence (PROTOCOL §5).

/** window.localStorage / sessionStorage, or null where storage is disabled. */
export function browserStorage(kind = "local") {
  try {
    return kind === "session" ? globalThis.sessionStorage || null : globalThis.localStorage || null;
  } catch {
    return null; // storage disabled: streaming still works, a reload starts over
  }
}

export class Persistence {
  /**
   * @param {object} options prefix ("modelriver_"); storage (where `<prefix>active_request` lives:
   *   localStorage, as the SDK); progressStorage (where `<prefix>progress_<channel>` lives; default
   *   the same); clock (its now()); maxAgeMs (records older than this are ignored and removed).
   */
  constructor({ prefix = "modelriver_", storage = browserStorage("local"), progressStorage = storage,
    clock = systemClock, maxAgeMs = MAX_AGE_MS } = {}) {
    this.prefix = prefix;
    this.storage = storage;
    this.progressStorage = progressStorage;
    this.clock = clock;
    this.maxAgeMs = maxAgeMs;
  }

  get activeKey() {
    return `${this.prefix}active_request`;
  }

  progressKey(channelId) {
    return `${this.prefix}progress_${channelId}`;
  }

  read(storage, key) {
    if (!storage) return null;
    try {
      const value = JSON.parse(storage.getItem(key) || "null");
      return isObject(value) ? value : null;
    } catch {
      return null; // a corrupt record: as if there were none
    }
  }

  write(storage, key, value) {
    if (!storage) return;
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch {
      /* quota or privacy mode: nothing remembered */
    }
  }

  remove(storage, key) {
    if (!storage) return;
    try {
      storage.removeItem(key);
    } catch {
      /* storage disabled */
    }
  }

  fresh(timestamp) {
    return typeof timestamp === "number" && this.clock.now() - timestamp <= this.maxAgeMs;
  }

  /** Remember the request in flight: {channelId, wsToken, timestamp, websocketUrl, websocketChannel}. */
  saveActive({ channelId, wsToken, websocketUrl, websocketChannel }) {
    this.write(this.storage, this.activeKey, { channelId, wsToken, timestamp: this.clock.now(), websocketUrl,
      websocketChannel: websocketChannel ?? null });
  }

  /** The remembered request, or null (none, corrupt, or older than maxAgeMs: then it is removed). */
  loadActive() {
    const stored = this.read(this.storage, this.activeKey);
    if (!stored) return null;
    if (!this.fresh(stored.timestamp) || typeof stored.channelId !== "string") {
      this.clear(stored.channelId);
      return null;
    }
    return stored;
  }

  /** Remember a request's progress: {lastSeq, text, steps, notes, status}; drops expired records. */
  saveProgress(channelId, progress) {
    this.prune();
    this.write(this.progressStorage, this.progressKey(channelId), { ...progress, channelId,
      savedAt: this.clock.now() });
  }

  /** A request's saved progress, or null (none, corrupt, expired, or without a last seq). */
  loadProgress(channelId) {
    const saved = this.read(this.progressStorage, this.progressKey(channelId));
    if (!saved || saved.channelId !== channelId || !this.fresh(saved.savedAt) || !Number.isInteger(saved.lastSeq)) {
      return null;
    }
    return saved;
  }

  /** Forget a request: its progress, and the active record if it is this one's. */
  clear(channelId) {
    const stored = this.read(this.storage, this.activeKey);
    if (!stored || stored.channelId === channelId || !this.fresh(stored.timestamp)) {
      this.remove(this.storage, this.activeKey);
    }
    if (typeof channelId === "string") this.remove(this.progressStorage, this.progressKey(channelId));
  }

  /** Remove progress records past their age (a tab closed mid-stream leaves one behind). */
  prune() {
    const storage = this.progressStorage;
    if (!storage) return;
    try {
      const stale = [];
      const head = `${this.prefix}progress_`;
      for (let i = 0; i < storage.length; i += 1) {
        const key = storage.key(i);
        if (key && key.startsWith(head) && !this.fresh(this.read(storage, key)?.savedAt)) stale.push(key);
      }
      for (const key of stale) storage.removeItem(key);
    } catch {
      /* storage disabled */
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One request: its link, its state, its persistence. Renderers subscribe to its changes.

/** A request from an async/reconnect answer (snake_case) or the SDK's camelCase shape. */
export function normalizeRequest(info) {
  const channelId = info.channel_id ?? info.channelId;
  const websocketChannel = info.websocket_channel ?? info.websocketChannel ?? info.topic ?? null;
  return {
    channelId,
    wsToken: info.ws_token ?? info.wsToken,
    websocketUrl: info.websocket_url ?? info.websocketUrl,
    websocketChannel,
    topic: websocketChannel || `ai_response:${channelId}`,
  };
}

export class RequestStream {
  /**
   * @param {object} info the request: {channel_id, ws_token, websocket_url, websocket_channel|topic}
   *   or the SDK's camelCase names.
   * @param {object} options persistence (a Persistence, or null: nothing remembered); resume (true:
   *   start from the progress saved for this channel); progress (start from this one instead:
   *   {lastSeq, text, steps, notes}); saveEveryMs (> 0: save progress at most this
   *   often while streaming; else only on saveProgress()); coalesce (join with {coalesce: true});
   *   WebSocket, clock, heartbeatMs, timeoutMs (for tests).
   *
   * Events (on(name, cb) returns an unsubscribe): "change" (changes, {event, payload, partial,
   * prose}) after the state changed (partial and prose are the state's, read lazily: a parse
   * only when a renderer reads them; changes.partial says they may have changed); "connecting"; "connected"; "disconnected" ({opened, failedOpens, tries});
   * "channel_joined"; "channel_error" (reason).
   */
  constructor(info, { persistence = null, resume = true, progress = null, saveEveryMs = 0, coalesce = true, WebSocket = null,
    clock = systemClock, heartbeatMs = HEARTBEAT_MS, timeoutMs = PUSH_TIMEOUT_MS } = {}) {
    this.request = normalizeRequest(info);
    this.persistence = persistence;
    this.saveEveryMs = saveEveryMs;
    this.clock = clock;
    this.state = new RequestState(this.request.channelId, { clock: () => this.clock.now() });
    this.listeners = new Map();
    this.saveTimer = null;
    let lastSeq = null;
    let saved = isObject(progress) && Number.isInteger(progress.lastSeq) ? progress : null;
    if (!saved && persistence && resume) saved = persistence.loadProgress(this.request.channelId);
    if (saved) {
      this.state.restore(saved);
      lastSeq = saved.lastSeq;
    }
    this.resumed = saved !== null;
    this.link = new PhoenixLink({
      url: () => socketEndpoint(this.request.websocketUrl, this.request.wsToken),
      topic: this.request.topic,
      params: () => (coalesce ? { coalesce: true } : {}),
      lastSeq,
      WebSocket,
      clock,
      heartbeatMs,
      timeoutMs,
      handlers: {
        state: (name, detail) => this.emit(name, detail),
        joined: () => {
          this.emit("channel_joined");
          this.apply(this.state.joined(), null, null);
        },
        refused: (reason) => {
          this.emit("channel_error", reason);
          this.apply(this.state.fail(`join refused: ${reason}`), null, null);
        },
        channelError: (reason) => this.emit("channel_error", reason),
        channelClosed: () => this.apply(
          this.state.fail("the server closed the channel before the request ended"), null, null),
        message: (event, payload) => this.apply(this.state.feed(event, payload), event, payload),
      },
    });
  }

  get channelId() {
    return this.request.channelId;
  }

  get lastSeq() {
    return this.link.lastSeq;
  }

  get connected() {
    return this.link.connected;
  }

  get done() {
    return this.state.done;
  }

  on(name, callback) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(callback);
    return () => this.listeners.get(name)?.delete(callback);
  }

  emit(name, ...args) {
    for (const callback of [...(this.listeners.get(name) || [])]) {
      try {
        callback(...args);
      } catch (error) {
        console.error("[modelriver] a listener failed", error);
      }
    }
  }

  /** Remember the request and connect. */
  start() {
    if (this.state.done) return;
    if (this.persistence) this.persistence.saveActive(this.request);
    this.link.open();
  }

  /** A fresh socket token (the old one expired or is held elsewhere): reconnect with it. */
  updateToken({ wsToken, websocketUrl } = {}) {
    if (!wsToken || this.state.done) return;
    const changed = wsToken !== this.request.wsToken;
    this.request.wsToken = wsToken;
    if (websocketUrl) this.request.websocketUrl = websocketUrl;
    if (this.persistence) this.persistence.saveActive(this.request);
    if (changed && !this.link.connected) this.link.reconnectNow();
  }

  /** End the request locally with `message` (e.g. it is no longer known to the backend). */
  fail(message) {
    this.apply(this.state.fail(message), null, null);
  }

  /** Save the progress now (e.g. on pagehide), so a reload rejoins with {last_seq}. */
  saveProgress() {
    if (this.saveTimer !== null) this.clock.clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (!this.persistence || this.state.done || this.link.lastSeq === null) return;
    this.persistence.saveProgress(this.request.channelId, { ...this.state.snapshot(), lastSeq: this.link.lastSeq });
  }

  /** Stop listening without forgetting the request (a reload or reconnect() picks it up). */
  close() {
    if (this.saveTimer !== null) this.clock.clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.link.close();
  }

  apply(change, event, payload) {
    if (change.done) {
      this.close(); // after a terminal response: close, never reconnect
      if (this.persistence) this.persistence.clear(this.request.channelId);
    } else if (this.saveEveryMs > 0 && this.saveTimer === null && this.persistence && event !== null) {
      this.saveTimer = this.clock.setTimeout(() => this.saveProgress(), this.saveEveryMs);
    }
    if (change !== NOTHING || event !== null) {
      const state = this.state; // partial and prose read lazily: parsed only when a renderer asks
      this.emit("change", change, { event, payload, get partial() { return state.partial; },
        get prose() { return state.prose; } });
    }
  }
}

// Classic scripts (the Django widget's modelriver.js) find the module here.
globalThis.ModelRiverLink = Object.freeze({
  RECONNECT_MS, REJOIN_MS, HEARTBEAT_MS, PUSH_TIMEOUT_MS, MAX_AGE_MS, STEP_ORDER, INITIAL_STEPS, NOTHING,
  systemClock, socketEndpoint, responseKind, errorMessage, browserStorage, normalizeRequest,
  PROSE_FIELDS, proseKey, PartialJson, StepTracker, RequestState, PhoenixLink, Persistence, RequestStream,
});
