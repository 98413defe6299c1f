// streamlit-modelriver: the browser side of st_modelriver(mode="component").
//
// A Streamlit components-v2 module (no iframe, no build step). Python hands it
// {channel_id, ws_token, websocket_url, topic, ...}: the one-time socket token of a request that
// Python already started with its API key (the key itself never comes here). This module speaks
// Phoenix Channels v2 straight to the gateway, renders tokens and workflow steps as they arrive,
// remembers the active request like ModelRiver's JS SDK (PROTOCOL §5) so a reload resumes it,
// and hands the final response back to Python with setStateValue("result", ...).
//
// Module state (the controllers) outlives a component's mount: Streamlit caches this module by
// content, so a remount or a rerun re-attaches to the live socket instead of opening another.

const RECONNECT_MS = [10, 50, 100, 150, 200, 250, 500, 1000, 2000]; // then 5000 (phoenix.js)
const REJOIN_MS = [1000, 2000, 5000]; // then 10000 (phoenix.js)
const HEARTBEAT_MS = 30000;
const PUSH_TIMEOUT_MS = 10000;
const ORPHAN_MS = 60000;
const MAX_AGE_MS = 5 * 60 * 1000; // the SDK ignores a stored request older than 5 minutes
const STEP_ORDER = ["queue", "process", "backend", "receive", "complete"];
const INITIAL_STEPS = [
  ["queue", "Queueing request"],
  ["process", "Processing AI request"],
  ["receive", "Waiting for response"],
  ["complete", "Response received"],
];
const SUCCESS = new Set(["success", "SUCCESS", "ok"]);

const controllers = new Map(); // channel_id -> Controller
const views = new WeakMap(); // component root element -> View

function storage(kind) {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch {
    return null; // storage disabled: streaming still works, reloads replay from the start
  }
}

function socketEndpoint(websocketUrl, token) {
  let base = String(websocketUrl).replace(/\/+$/, "");
  if (!base.endsWith("/socket")) base += "/socket";
  return `${base}/websocket?token=${encodeURIComponent(token)}&vsn=2.0.0`;
}

// The SDK's reading of a response status (PROTOCOL §3).
function responseKind(response) {
  const status = response && response.status;
  if (SUCCESS.has(status) || (response && response.meta && response.meta.status === "success")) {
    return "success";
  }
  if (status === "completed") return "completed";
  if (status === "ai_generated") return "ai_generated";
  return "error";
}

function errorMessage(response) {
  const error = response && response.error;
  if (error && typeof error === "object" && typeof error.message === "string") return error.message;
  if (typeof error === "string") return error;
  if (response && typeof response.message === "string") return response.message;
  return `request ended with status ${JSON.stringify(response && response.status)}`;
}

// ---------------------------------------------------------------------------------------------
// A Phoenix Channels v2 socket carrying one channel: join, heartbeat, reconnect, rejoin.

class PhoenixLink {
  constructor({ url, topic, joinParams, onMessage, onJoin, onState, onOpenFailures }) {
    this.url = url; // () => socket URL with the current token
    this.topic = topic;
    this.joinParams = joinParams;
    this.onMessage = onMessage;
    this.onJoin = onJoin;
    this.onState = onState;
    this.onOpenFailures = onOpenFailures;
    this.ref = 0;
    this.joinRef = null;
    this.ws = null;
    this.closed = false;
    this.tries = 0;
    this.rejoinTries = 0;
    this.failedOpens = 0;
    this.pendingHeartbeat = null;
    this.timers = new Set();
  }

  nextRef() {
    this.ref += 1;
    return String(this.ref);
  }

  after(ms, fn) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, ms);
    this.timers.add(id);
    return id;
  }

  cancel(id) {
    if (id != null) {
      clearTimeout(id);
      this.timers.delete(id);
    }
  }

  open() {
    if (this.closed) return;
    this.onState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.tries = 0;
      this.failedOpens = 0;
      this.pendingHeartbeat = null;
      this.onState("connected");
      this.join();
      this.heartbeat = setInterval(() => this.sendHeartbeat(), HEARTBEAT_MS);
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = () => {
      clearInterval(this.heartbeat);
      this.cancel(this.joinTimer);
      this.cancel(this.rejoinTimer);
      if (this.ws === ws) this.ws = null;
      this.joinRef = null;
      if (this.closed) return;
      if (!opened) {
        this.failedOpens += 1;
        this.onOpenFailures(this.failedOpens); // a refused token looks like this in a browser
      }
      this.onState("disconnected");
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.closed) return;
    const delay = RECONNECT_MS[this.tries] ?? 5000;
    this.tries += 1;
    this.after(delay, () => this.open());
  }

  reconnectNow() {
    // A fresh token arrived: drop the socket (if any) and connect with it at once.
    if (this.closed) return;
    this.tries = 0;
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      clearInterval(this.heartbeat);
      ws.close();
    }
    this.open();
  }

  send(joinRef, ref, topic, event, payload) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    }
  }

  join() {
    this.joinRef = this.nextRef();
    this.send(this.joinRef, this.joinRef, this.topic, "phx_join", this.joinParams());
    this.cancel(this.joinTimer);
    this.joinTimer = this.after(PUSH_TIMEOUT_MS, () => this.rejoinLater());
  }

  rejoinLater() {
    this.cancel(this.joinTimer);
    this.cancel(this.rejoinTimer);
    const delay = REJOIN_MS[this.rejoinTries] ?? 10000;
    this.rejoinTries += 1;
    this.rejoinTimer = this.after(delay, () => this.join());
  }

  sendHeartbeat() {
    if (this.pendingHeartbeat !== null) {
      // No reply within one interval: the connection is dead; reconnect.
      this.pendingHeartbeat = null;
      if (this.ws) this.ws.close();
      return;
    }
    this.pendingHeartbeat = this.nextRef();
    this.send(null, this.pendingHeartbeat, "phoenix", "heartbeat", {});
  }

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
      if (event === "phx_reply" && ref === this.pendingHeartbeat) this.pendingHeartbeat = null;
      return;
    }
    if (topic !== this.topic) return;
    if (event === "phx_reply") {
      if (ref !== null && ref === this.joinRef) {
        this.cancel(this.joinTimer);
        const ok = payload && payload.status === "ok";
        if (ok) this.rejoinTries = 0;
        const reason = payload && payload.response && payload.response.reason;
        this.onJoin(ok, reason || "join refused");
      }
      return;
    }
    if (joinRef !== null && joinRef !== undefined && joinRef !== this.joinRef) return; // stale join
    if (event === "phx_error" || event === "phx_close") {
      this.joinRef = null;
      this.rejoinLater();
      return;
    }
    this.onMessage(event, payload);
  }

  close() {
    this.closed = true;
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    clearInterval(this.heartbeat);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      if (this.joinRef && ws.readyState === WebSocket.OPEN) {
        this.send(this.joinRef, this.nextRef(), this.topic, "phx_leave", {});
      }
      ws.close(1000);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One request: its socket, its answer so far, its steps; rendered by any number of views.

class Controller {
  constructor(data) {
    this.channelId = data.channel_id;
    this.token = data.ws_token;
    this.websocketUrl = data.websocket_url;
    this.topic = data.topic || `ai_response:${data.channel_id}`;
    this.prefix = data.storage_prefix || "modelriver_";
    this.urlParam = data.url_param || null;
    this.parts = [];
    this.lastSeq = null;
    this.steps = new Map(INITIAL_STEPS.map(([id, name]) => [id, { id, name, status: "pending" }]));
    this.notes = [];
    this.state = "connecting";
    this.label = "Connecting…";
    this.result = null; // the terminal response, once it came
    this.delivered = false;
    this.joinedOnce = false;
    this.stopping = false;
    this.refreshAsked = 0;
    this.refreshedFrom = null;
    this.views = new Set();
    this.host = null; // the latest mount's {setStateValue, setTriggerValue}
    this.link = null;
  }

  get progressKey() {
    return `${this.prefix}progress_${this.channelId}`;
  }

  get text() {
    return this.parts.join("");
  }

  start() {
    this.restore();
    this.persistActive();
    this.markUrl(true);
    this.link = new PhoenixLink({
      url: () => socketEndpoint(this.websocketUrl, this.token),
      topic: this.topic,
      joinParams: () => (this.lastSeq === null ? { coalesce: true } : { last_seq: this.lastSeq, coalesce: true }),
      onMessage: (event, payload) => this.onMessage(event, payload),
      onJoin: (ok, reason) => this.onJoin(ok, reason),
      onState: (state) => this.onLinkState(state),
      onOpenFailures: (count) => this.onOpenFailures(count),
    });
    this.link.open();
  }

  // -- persistence (PROTOCOL §5) ---------------------------------------------------------------

  persistActive() {
    const local = storage("local");
    if (!local) return;
    try {
      local.setItem(`${this.prefix}active_request`, JSON.stringify({
        channelId: this.channelId,
        wsToken: this.token,
        timestamp: Date.now(),
        websocketUrl: this.websocketUrl,
        websocketChannel: this.topic,
      }));
    } catch {
      /* quota or privacy mode: nothing to remember */
    }
  }

  // ?mr_<key>=<channel_id> in the page URL while in flight, so a reload (a new Streamlit
  // session) finds the request. replaceState: no history entry, no Streamlit rerun.
  markUrl(inFlight) {
    if (!this.urlParam) return;
    try {
      const url = new URL(window.location.href);
      const has = url.searchParams.get(this.urlParam) === this.channelId;
      if (inFlight === has) return;
      if (inFlight) url.searchParams.set(this.urlParam, this.channelId);
      else url.searchParams.delete(this.urlParam);
      window.history.replaceState(window.history.state, "", url);
    } catch {
      /* a sandboxed page: reloads then start over */
    }
  }

  clearPersisted() {
    const local = storage("local");
    const session = storage("session");
    try {
      if (local) {
        const stored = JSON.parse(local.getItem(`${this.prefix}active_request`) || "null");
        if (stored && stored.channelId === this.channelId) local.removeItem(`${this.prefix}active_request`);
      }
      if (session) session.removeItem(this.progressKey);
    } catch {
      /* ignore */
    }
  }

  // The answer so far and the last seq, saved together when the page goes away, so the
  // resumed join asks only for what came after ({last_seq}).
  saveProgress() {
    const session = storage("session");
    if (!session || this.result) return;
    try {
      session.setItem(this.progressKey, JSON.stringify({
        text: this.text,
        lastSeq: this.lastSeq,
        steps: [...this.steps.values()],
        notes: this.notes,
        savedAt: Date.now(),
      }));
    } catch {
      /* ignore */
    }
  }

  restore() {
    const session = storage("session");
    if (!session) return;
    try {
      const saved = JSON.parse(session.getItem(this.progressKey) || "null");
      if (!saved || Date.now() - saved.savedAt > MAX_AGE_MS || typeof saved.lastSeq !== "number") return;
      this.parts = saved.text ? [saved.text] : [];
      this.lastSeq = saved.lastSeq;
      this.steps = new Map(saved.steps.map((s) => [s.id, s]));
      this.notes = saved.notes || [];
      this.joinedOnce = true;
      this.resumed = true;
    } catch {
      /* a corrupt record: start from the beginning */
    }
  }

  // -- protocol events ----------------------------------------------------------------------------

  onLinkState(state) {
    if (this.result) return;
    if (state === "connecting") this.setLabel(this.joinedOnce ? "Reconnecting…" : "Connecting…");
    if (state === "disconnected") this.setLabel("Connection lost; reconnecting…");
  }

  onOpenFailures(count) {
    // Browsers hide the handshake's HTTP status; two refused opens in a row most likely mean the
    // token expired. Ask Python for a fresh one (the reconnect API, with the key, server side).
    if (count >= 2 && this.host && this.refreshAsked < 5 && this.refreshedFrom !== this.token) {
      this.refreshedFrom = this.token; // once per token: the fresh one comes with the next render
      this.refreshAsked += 1;
      this.host.setTriggerValue("refresh", `${this.channelId}:${this.refreshAsked}`);
    }
  }

  onJoin(ok, reason) {
    if (this.result) return;
    if (!ok) {
      this.finish({ status: "error", channel_id: this.channelId, error: { message: `join refused: ${reason}` } });
      return;
    }
    this.state = "streaming";
    if (!this.joinedOnce) {
      this.joinedOnce = true;
      this.setStep("queue", "success");
    }
    this.setLabel(this.parts.length ? "Streaming…" : "Waiting for the model…");
    this.render();
  }

  onMessage(event, payload) {
    if (this.result || !payload || typeof payload !== "object") return;
    const seq = payload.seq;
    if (Number.isInteger(seq)) {
      if (this.lastSeq !== null && seq <= this.lastSeq) return; // seen already (a replay)
      this.lastSeq = seq;
    }
    switch (event) {
      case "tokens": {
        if (typeof payload.data !== "string") return;
        this.parts.push(payload.data);
        if (this.label !== "Streaming…") this.setLabel("Streaming…");
        for (const view of this.views) view.appendText(payload.data);
        return;
      }
      case "status": {
        if (payload.reset || payload.status === "failover") {
          if (payload.reset) this.parts = [];
          const from = payload.from || "provider", to = payload.to || "the next provider";
          this.notes.push(`Failover: ${from} → ${to}${payload.reason ? ` (${payload.reason})` : ""}`);
          this.render();
        }
        const labels = {
          queued: "Queued…", started: "Generating…", streaming: "Streaming…",
          ai_generated: "AI answer ready", awaiting_callback: "Waiting for backend callback…",
        };
        if (labels[payload.status]) this.setLabel(labels[payload.status]);
        return;
      }
      case "tool_call": {
        let args = payload.arguments;
        try {
          args = typeof args === "string" ? args : JSON.stringify(args);
        } catch {
          args = "";
        }
        this.notes.push(`Tool call: ${payload.name}(${args ?? ""})`);
        this.render();
        return;
      }
      case "response": {
        const kind = responseKind(payload);
        if (kind === "ai_generated") {
          this.setStep("process", "success", { duration: payload.meta && payload.meta.duration_ms });
          this.setStep("backend", "pending", { name: "Waiting for backend callback..." });
          this.setLabel("Waiting for backend callback…");
          return;
        }
        this.finish(payload);
        return;
      }
      case "error": {
        const message = typeof payload.message === "string" ? payload.message : "request failed";
        this.finish({ status: "error", channel_id: this.channelId, error: { message } });
        return;
      }
      default:
        return; // heartbeats and unknown events
    }
  }

  setStep(id, status, { name, duration, error } = {}) {
    const old = this.steps.get(id) || { id, name: name || id, status: "pending" };
    this.steps.set(id, {
      ...old,
      status,
      name: name || old.name,
      duration: typeof duration === "number" ? duration : old.duration,
      errorMessage: error,
    });
    this.render();
  }

  finish(response) {
    const kind = responseKind(response);
    if (kind === "error") {
      const message = errorMessage(response);
      for (const id of ["process", "receive", "complete"]) this.setStep(id, "error", { error: message });
      this.state = "error";
      this.setLabel(message);
    } else {
      this.setStep("queue", "success");
      this.setStep("process", "success", { duration: response.meta && response.meta.duration_ms });
      if (kind === "completed") this.setStep("backend", "success", { name: "Backend processed" });
      else if (this.steps.has("backend")) this.setStep("backend", "success", { name: "No backend processing needed" });
      this.setStep("receive", "success");
      this.setStep("complete", "success");
      this.state = "done";
      this.setLabel("Done");
    }
    this.result = response;
    if (this.link) this.link.close(); // after a terminal response: close, never reconnect
    this.clearPersisted();
    this.markUrl(false);
    this.render();
    this.deliver();
  }

  deliver() {
    if (!this.result || this.delivered || !this.host) return;
    this.delivered = true;
    this.host.setStateValue("result", {
      channel_id: this.channelId,
      response: this.result,
      text: this.text,
      steps: [...this.steps.values()],
      notes: this.notes,
      last_seq: this.lastSeq,
    });
  }

  stop() {
    if (this.result || this.stopping || !this.host) return;
    this.stopping = true;
    this.setLabel("Stopping…");
    this.host.setTriggerValue("stop", this.channelId); // Python cancels upstream with its key
    this.render();
  }

  // -- views --------------------------------------------------------------------------------------

  attach(view, host) {
    clearTimeout(this.orphanTimer);
    this.host = host;
    this.views.add(view);
    view.renderAll(this);
    this.deliver();
  }

  detach(view) {
    this.views.delete(view);
    if (this.views.size === 0 && !this.result) {
      // Unmounted mid-stream and not remounted for a minute: the app moved on. Keep the
      // progress (a later mount resumes from it) and free the socket.
      clearTimeout(this.orphanTimer);
      this.orphanTimer = setTimeout(() => {
        if (this.views.size > 0 || this.result) return;
        this.saveProgress();
        if (this.link) this.link.close();
        controllers.delete(this.channelId);
      }, ORPHAN_MS);
    }
  }

  updateToken(data) {
    if (data.ws_token && data.ws_token !== this.token) {
      this.token = data.ws_token;
      if (data.websocket_url) this.websocketUrl = data.websocket_url;
      this.persistActive();
      if (this.link && !this.result) this.link.reconnectNow();
    }
  }

  setLabel(label) {
    this.label = label;
    for (const view of this.views) view.renderStatus(this);
  }

  render() {
    for (const view of this.views) view.renderAll(this);
  }
}

// ---------------------------------------------------------------------------------------------
// The DOM of one mounted component.

class View {
  constructor(root) {
    this.root = root;
    this.stepsEl = root.querySelector(".mr-steps");
    this.notesEl = root.querySelector(".mr-notes");
    this.textEl = root.querySelector(".mr-text");
    this.statusEl = root.querySelector(".mr-status");
    this.stopEl = root.querySelector(".mr-stop");
    this.controller = null;
    this.stopEl.addEventListener("click", () => this.controller && this.controller.stop());
  }

  configure(data) {
    this.stepsEl.hidden = data.show_steps === false;
    if (data.stop_label) this.stopEl.textContent = data.stop_label;
  }

  appendText(delta) {
    this.textEl.append(delta); // a new text node: the growing answer is never copied
    this.root.dataset.chars = String(Number(this.root.dataset.chars || 0) + delta.length);
  }

  renderAll(ctl) {
    this.root.dataset.channel = ctl.channelId;
    const text = ctl.text;
    this.textEl.textContent = text;
    this.root.dataset.chars = String(text.length);
    this.stepsEl.replaceChildren(...STEP_ORDER.filter((id) => ctl.steps.has(id)).map((id) => {
      const step = ctl.steps.get(id);
      const li = document.createElement("li");
      li.dataset.step = step.id;
      li.dataset.status = step.status;
      const name = document.createElement("span");
      name.className = "mr-step-name";
      name.textContent = step.name;
      li.append(name);
      if (typeof step.duration === "number") {
        const duration = document.createElement("span");
        duration.className = "mr-step-duration";
        duration.textContent = `${step.duration} ms`;
        li.append(duration);
      }
      return li;
    }));
    this.notesEl.replaceChildren(...ctl.notes.map((note) => {
      const div = document.createElement("div");
      div.textContent = note;
      return div;
    }));
    this.renderStatus(ctl);
  }

  renderStatus(ctl) {
    this.root.dataset.state = ctl.state;
    this.statusEl.textContent = ctl.label;
    this.stopEl.hidden = !!ctl.result;
    this.stopEl.disabled = ctl.stopping;
  }
}

// ---------------------------------------------------------------------------------------------

let pagehideInstalled = false;

function installPagehide() {
  if (pagehideInstalled) return;
  pagehideInstalled = true;
  window.addEventListener("pagehide", () => {
    for (const ctl of controllers.values()) ctl.saveProgress();
  });
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const root = parentElement.querySelector(".mr-root");
  if (!root || !data || !data.channel_id) return undefined;
  installPagehide();

  let view = views.get(root);
  if (!view) {
    view = new View(root);
    views.set(root, view);
  }
  view.configure(data);

  let ctl = controllers.get(data.channel_id);
  const fresh = !ctl;
  if (fresh) {
    ctl = new Controller(data);
    controllers.set(data.channel_id, ctl);
  } else {
    ctl.updateToken(data);
  }
  if (view.controller && view.controller !== ctl) view.controller.detach(view);
  view.controller = ctl;
  ctl.attach(view, { setStateValue, setTriggerValue });
  if (fresh) ctl.start();

  return () => {
    ctl.detach(view);
    if (view.controller === ctl) view.controller = null;
    // A finished request has nothing left to keep; an unfinished one keeps streaming so that a
    // remount (the next rerun) picks it up where it is.
    if (ctl.result && ctl.delivered && ctl.views.size === 0) controllers.delete(ctl.channelId);
  };
}
