// streamlit-modelriver: the browser side of st_modelriver(mode="component"); it only renders.
//
// A Streamlit components-v2 module (no iframe, no build step). Python hands it
// {channel_id, ws_token, websocket_url, topic, ...}: the one-time socket token of a request that
// Python already started with its API key (the key itself never comes here). The protocol is the
// shared browser module modelriver-link.js (beside this file; a copy of core's
// modelriver/browser/modelriver-link.js): _component.py registers the two as one inline module,
// that one first (components v2 load inline JavaScript from a Blob URL, where a relative import
// cannot resolve), so RequestStream, Persistence and browserStorage below are its. It speaks
// Phoenix Channels v2 to the gateway, folds the events into the request's state and remembers the
// request like ModelRiver's JS SDK (PROTOCOL §5) so a reload resumes it. This file draws that
// state and hands the final response back to Python with setStateValue("result", ...).
//
// Module state (the controllers) outlives a component's mount: Streamlit caches this module by
// content, so a remount or a rerun re-attaches to the live socket instead of opening another.

const ORPHAN_MS = 60000;
const LABELS = {
  queued: "Queued…", started: "Generating…", streaming: "Streaming…", ai_generated: "AI answer ready",
  awaiting_callback: "Waiting for backend callback…", success: "Done", completed: "Done",
};

const controllers = new Map(); // channel_id -> Controller
const views = new WeakMap(); // component root element -> View

// A note (a failover or a tool call) as the line shown, and handed back to Python.
function noteText(note) {
  if (note.kind === "failover") {
    const reason = note.reason ? ` (${note.reason})` : "";
    return `Failover: ${note.from || "provider"} → ${note.to || "the next provider"}${reason}`;
  }
  let args = note.arguments;
  try {
    args = typeof args === "string" ? args : JSON.stringify(args);
  } catch {
    args = "";
  }
  return `Tool call: ${note.name}(${args ?? ""})`;
}

// A structured answer's card: [label, text] of each field but the prose one, as far as it came
// (summary, sentiment with confidence, topics, action items first; then any other field).
const CARD_ORDER = ["summary", "sentiment", "confidence", "topics", "action_items"];

function cardFields(value, prose) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return [];
  const out = [];
  const text = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  if (typeof value.summary === "string" && value.summary) out.push(["Summary", value.summary]);
  const level = typeof value.confidence === "number" ? `${Math.round(value.confidence * 100)}%` : null;
  if (typeof value.sentiment === "string" && value.sentiment) {
    out.push(["Sentiment", level ? `${value.sentiment} · confidence ${level}` : value.sentiment]);
  } else if (level) {
    out.push(["Confidence", level]);
  }
  const topics = Array.isArray(value.topics) ? value.topics.filter((t) => typeof t === "string" && t) : [];
  if (topics.length) out.push(["Topics", topics.join(", ")]);
  const items = Array.isArray(value.action_items) ? value.action_items : [];
  const tasks = items.map((item) => {
    if (typeof item === "string") return item;
    if (!item || typeof item.task !== "string" || !item.task) return "";
    return typeof item.priority === "string" && item.priority ? `${item.task} (${item.priority})` : item.task;
  }).filter(Boolean);
  if (tasks.length) out.push(["Action items", tasks.map((t) => `• ${t}`).join("\n")]);
  for (const [name, v] of Object.entries(value)) {
    if (CARD_ORDER.includes(name) || name === prose || v === null || v === "") continue;
    if (typeof v === "object" && Object.keys(v).length === 0) continue;
    out.push([name, text(v)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// One request: the shared RequestStream, rendered by any number of views.

class Controller {
  constructor(data) {
    this.channelId = data.channel_id;
    this.urlParam = data.url_param || null;
    this.stream = new RequestStream(
      { channel_id: data.channel_id, ws_token: data.ws_token, websocket_url: data.websocket_url, topic: data.topic },
      {
        // the SDK's active request in localStorage; the progress per tab (a reload keeps it)
        persistence: new Persistence({
          prefix: data.storage_prefix || "modelriver_",
          storage: browserStorage("local"),
          progressStorage: browserStorage("session"),
        }),
      },
    );
    this.joinedOnce = this.stream.resumed;
    this.phase = "connecting"; // connecting | streaming | done | error
    this.label = "Connecting…";
    this.shownParts = 0; // deltas the views show
    this.delivered = false;
    this.stopping = false;
    this.refreshAsked = 0;
    this.refreshedFrom = null;
    this.views = new Set();
    this.host = null; // the latest mount's {setStateValue, setTriggerValue}
    this.stream.on("connecting", () => this.onLinkState("connecting"));
    this.stream.on("disconnected", (detail) => {
      this.onLinkState("disconnected");
      if (!detail.opened) this.onOpenFailures(detail.failedOpens);
    });
    this.stream.on("channel_joined", () => this.onJoined());
    this.stream.on("change", (change) => this.onChange(change));
  }

  get state() {
    return this.stream.state;
  }

  get result() {
    return this.stream.state.result;
  }

  start() {
    this.stream.start(); // the socket first: the URL can wait a few ms, the first token cannot
    this.markUrl(true);
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

  // -- the stream's news --------------------------------------------------------------------------

  onLinkState(state) {
    if (this.result) return;
    if (state === "connecting") this.setLabel(this.joinedOnce ? "Reconnecting…" : "Connecting…");
    if (state === "disconnected") this.setLabel("Connection lost; reconnecting…");
  }

  onOpenFailures(count) {
    // Browsers hide the handshake's HTTP status; two refused opens in a row most likely mean the
    // token expired. Ask Python for a fresh one (the reconnect API, with the key, server side).
    const token = this.stream.request.wsToken;
    if (count >= 2 && this.host && this.refreshAsked < 5 && this.refreshedFrom !== token) {
      this.refreshedFrom = token; // once per token: the fresh one comes with the next render
      this.refreshAsked += 1;
      this.host.setTriggerValue("refresh", `${this.channelId}:${this.refreshAsked}`);
    }
  }

  onJoined() {
    if (this.result) return;
    this.joinedOnce = true;
    this.phase = "streaming";
    this.setLabel(this.state.partCount ? "Streaming…" : "Waiting for the model…");
    this.render();
  }

  onChange(change) {
    if (change.done) {
      this.finish();
      return;
    }
    if (change.reset || change.steps.length || change.notes.length) {
      this.render();
    } else if (this.state.structured) {
      // A structured answer: its prose and card, never its JSON (`partial` parses lazily).
      if (change.partial) for (const view of this.views) view.renderStructured(this);
    } else if (change.text) {
      const delta = this.state.textSince(this.shownParts);
      this.shownParts = this.state.partCount;
      for (const view of this.views) view.appendText(delta);
    }
    if (change.status && LABELS[this.state.status]) this.setLabel(LABELS[this.state.status]);
  }

  finish() {
    const state = this.state;
    this.phase = state.error === null ? "done" : "error";
    this.label = state.error === null ? "Done" : state.error;
    this.markUrl(false);
    this.render();
    this.deliver();
  }

  deliver() {
    const state = this.state;
    if (!state.result || this.delivered || !this.host) return;
    this.delivered = true;
    this.host.setStateValue("result", {
      channel_id: this.channelId,
      response: state.result,
      text: state.text,
      steps: state.steps.map((step) => ({ ...step })),
      notes: state.notes.map(noteText),
      last_seq: this.stream.lastSeq,
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
        this.stream.saveProgress();
        this.stream.close();
        controllers.delete(this.channelId);
      }, ORPHAN_MS);
    }
  }

  updateToken(data) {
    this.stream.updateToken({ wsToken: data.ws_token, websocketUrl: data.websocket_url });
  }

  setLabel(label) {
    this.label = label;
    for (const view of this.views) view.renderStatus(this);
  }

  render() {
    this.shownParts = this.state.partCount;
    for (const view of this.views) view.renderAll(this);
  }
}

// ---------------------------------------------------------------------------------------------
// The DOM of one mounted component. Model output is untrusted: it is only ever set as text.

class View {
  constructor(root) {
    this.root = root;
    this.stepsEl = root.querySelector(".mr-steps");
    this.notesEl = root.querySelector(".mr-notes");
    this.textEl = root.querySelector(".mr-text");
    this.cardEl = root.querySelector(".mr-card");
    this.cardKey = null;
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

  // A structured answer: the prose field as the text, the other fields as a card, as far as
  // they came. Text only grows here (a reset re-renders all); the card is rebuilt when it changed.
  renderStructured(ctl) {
    const state = ctl.state;
    const prose = state.prose;
    if (prose !== this.textEl.textContent) {
      this.textEl.textContent = prose;
      this.root.dataset.chars = String(prose.length);
    }
    const fields = cardFields(state.partial, state.proseAnnounced ? state.proseField : proseKey(state.partial));
    const key = JSON.stringify(fields);
    if (key === this.cardKey) return;
    this.cardKey = key;
    this.cardEl.hidden = fields.length === 0;
    this.cardEl.replaceChildren(...fields.map(([name, value]) => {
      const row = document.createElement("div");
      row.dataset.field = name;
      const label = document.createElement("span");
      label.className = "mr-card-label";
      label.textContent = name;
      const shown = document.createElement("span");
      shown.className = "mr-card-value";
      shown.textContent = value;
      row.append(label, shown);
      return row;
    }));
  }

  renderAll(ctl) {
    this.root.dataset.channel = ctl.channelId;
    if (ctl.state.structured) {
      this.renderStructured(ctl);
    } else {
      const text = ctl.state.text;
      this.textEl.textContent = text;
      this.root.dataset.chars = String(text.length);
    }
    this.stepsEl.replaceChildren(...ctl.state.steps.map((step) => {
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
    this.notesEl.replaceChildren(...ctl.state.notes.map((note) => {
      const div = document.createElement("div");
      div.textContent = noteText(note);
      return div;
    }));
    this.renderStatus(ctl);
  }

  renderStatus(ctl) {
    this.root.dataset.state = ctl.phase;
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
    for (const ctl of controllers.values()) ctl.stream.saveProgress();
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
  if (fresh) ctl.start(); // open the socket before drawing anything: the handshake overlaps the rest
  if (view.controller && view.controller !== ctl) view.controller.detach(view);
  view.controller = ctl;
  ctl.attach(view, { setStateValue, setTriggerValue });

  return () => {
    ctl.detach(view);
    if (view.controller === ctl) view.controller = null;
    // A finished request has nothing left to keep; an unfinished one keeps streaming so that a
    // remount (the next rerun) picks it up where it is.
    if (ctl.result && ctl.delivered && ctl.views.size === 0) controllers.delete(ctl.channelId);
  };
}
