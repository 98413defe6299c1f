/* django_modelriver's browser client: Phoenix v2 to Django's relay, no build step.
 *
 *   const client = new ModelRiver.Client({apiBaseUrl: "/modelriver", csrfToken});
 *   client.on("token", (p) => ...); client.on("response", (r) => ...);
 *   await client.start({message: "Hi", workflow: "demo-chat"});   // or: await client.resume()
 *
 * Like the official SDK it persists the active request under `<prefix>active_request`
 * ({channelId, wsToken, timestamp, websocketUrl, websocketChannel}, ignored after 5 minutes) and
 * resumes it after a reload through the reconnect view (a fresh token) - and, ours, it keeps the
 * partial answer with its last seq under `<prefix>active_partial`, so it rejoins with
 * {last_seq} and the server replays only what the page missed.
 * Methods (the SDK's where they exist): start, connect, resume (= reconnectWithBackend), reconnect,
 * cancel, disconnect, reset, destroy, getState, hasPendingRequest, on (returns an unsubscribe), off.
 * Events: connecting, connected, disconnected, channel_joined, channel_error, step, status,
 * token, text, reset, tool_call, response, error, done.
 * ModelRiver.Chat(element, options) is the ready chat widget built on it.
 */
(function (global) {
  "use strict";

  var MAX_AGE = 5 * 60 * 1000;
  var RECONNECT = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];
  var SUCCESS = { success: 1, SUCCESS: 1, ok: 1 };

  function socketEndpoint(websocketUrl, token) {
    var base = String(websocketUrl).replace(/\/+$/, "");
    if (!/\/socket$/.test(base)) base += "/socket";
    return base + "/websocket?token=" + encodeURIComponent(token) + "&vsn=2.0.0";
  }

  function responseKind(r) {
    if (SUCCESS[r.status] || (r.meta && r.meta.status === "success")) return "success";
    if (r.status === "completed" || r.status === "ai_generated") return r.status;
    return "error";
  }

  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }

  function initialSteps() {
    return [
      { id: "queue", name: "Queueing request", status: "pending" },
      { id: "process", name: "Processing AI request", status: "pending" },
      { id: "receive", name: "Waiting for response", status: "pending" },
      { id: "complete", name: "Response received", status: "pending" },
    ];
  }

  /* ---------------------------------------------------------------- the client */

  function Client(options) {
    options = options || {};
    var base = (options.apiBaseUrl || "/modelriver").replace(/\/+$/, "");
    this.options = {
      apiBaseUrl: base,
      startUrl: options.startUrl || base + "/start",
      cancelUrl: options.cancelUrl || base + "/cancel",
      reconnectUrl: options.reconnectUrl || base + "/api/v1/ai/reconnect",
      csrfToken: options.csrfToken || null,
      persist: options.persist !== false,
      storageKeyPrefix: options.storageKeyPrefix || "modelriver_",
      heartbeatInterval: options.heartbeatInterval || 30000,
      coalesce: options.coalesce !== false,
      debug: !!options.debug,
    };
    this._handlers = {};
    this._ref = 0;
    this._reset();
    var self = this;
    if (typeof window !== "undefined") {
      window.addEventListener("pagehide", function () { self._savePartial(); });
    }
  }

  Client.prototype._reset = function () {
    this.request = null;
    this.text = "";
    this.lastSeq = null;
    this.steps = initialSteps();
    this.response = null;
    this.done = false;
    this._joinedOnce = false;
    this._attempt = 0;
    this._hbRef = null;
    this._joinRef = null;
  };

  Client.prototype.on = function (event, cb) {
    (this._handlers[event] = this._handlers[event] || []).push(cb);
    var self = this;
    return function () { self.off(event, cb); };
  };
  Client.prototype.off = function (event, cb) {
    if (!event) { this._handlers = {}; return; }
    if (!cb) { delete this._handlers[event]; return; }
    this._handlers[event] = (this._handlers[event] || []).filter(function (h) { return h !== cb; });
  };
  Client.prototype._emit = function (event, arg) {
    if (this.options.debug) console.debug("[modelriver]", event, arg);
    (this._handlers[event] || []).slice().forEach(function (h) {
      try { h(arg); } catch (e) { console.error("[modelriver] handler failed", e); }
    });
  };

  Client.prototype.getState = function () {
    return { request: this.request, text: this.text, lastSeq: this.lastSeq, steps: this.steps.slice(),
             connected: !!(this._ws && this._ws.readyState === 1), done: this.done, response: this.response };
  };
  Client.prototype.hasPendingRequest = function () { return !!this.request && !this.done; };

  Client.prototype._post = function (url, body, csrf) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrf) headers["X-CSRFToken"] = this.options.csrfToken || cookie("csrftoken") || "";
    return fetch(url, { method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          if (!resp.ok) {
            var err = new Error(data.message || data.error || "HTTP " + resp.status);
            err.status = resp.status;
            throw err;
          }
          return data;
        });
      });
  };

  /** Start a request: {message} or {messages}, optional workflow. Resolves with the answer. */
  Client.prototype.start = function (body) {
    var self = this;
    this.disconnect();
    this._reset();
    return this._post(this.options.startUrl, body, true).then(function (answer) {
      self.connect(answer);
      return answer;
    });
  };

  /** Listen to a request: an async/reconnect answer (snake_case) or the SDK's camelCase shape. */
  Client.prototype.connect = function (info, resume) {
    resume = resume || {};
    this.request = {
      channelId: info.channel_id || info.channelId,
      wsToken: info.ws_token || info.wsToken,
      websocketUrl: info.websocket_url || info.websocketUrl,
      websocketChannel: info.websocket_channel || info.websocketChannel || null,
    };
    this.request.topic = this.request.websocketChannel || "ai_response:" + this.request.channelId;
    this.done = false;
    if (typeof resume.lastSeq === "number") {
      this.lastSeq = resume.lastSeq;
      this.text = resume.text || "";
      if (resume.steps) this.steps = resume.steps;
      this._joinedOnce = true;
    }
    this._saveActive();
    this._open();
  };

  /** Resume the persisted request (or, with {server: true}, the session's latest one). */
  Client.prototype.resume = function (opts) {
    opts = opts || {};
    var stored = this._load("active_request");
    if (stored && Date.now() - (stored.timestamp || 0) > MAX_AGE) {
      this._clear();
      stored = null;
    }
    if (!stored && !opts.server) return Promise.resolve(null);
    var self = this;
    var body = stored ? { channel_id: stored.channelId } : {};
    return this._post(this.options.reconnectUrl, body, false).then(function (answer) {
      if (!answer || !answer.channel_id) return null;  // 204: nothing in flight
      self.disconnect();
      self._reset();
      self.connect(answer, self._partialFor(answer.channel_id));
      return answer;
    }, function (err) {
      if (err.status === 403 || err.status === 404) self._clear();
      return null;
    });
  };

  /** Cancel the request upstream (the server answers with a terminal "cancelled" response). */
  Client.prototype.cancel = function () {
    if (!this.request || this.done) return Promise.resolve(null);
    return this._post(this.options.cancelUrl, { channel_id: this.request.channelId }, true);
  };

  Client.prototype.disconnect = function () {
    clearTimeout(this._timer);
    this._stopHeartbeat();
    if (this._ws) {
      var ws = this._ws;
      this._ws = null;
      ws.onclose = ws.onmessage = ws.onopen = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
  };

  Client.prototype.destroy = function () { this.disconnect(); this.off(); };

  /** Forget the current request: disconnect, clear the persisted state, back to idle. */
  Client.prototype.reset = function () {
    this.disconnect();
    this._clear();
    this._reset();
  };

  /** The official SDK's names: reconnect with the stored token, or with a fresh one from the backend. */
  Client.prototype.reconnect = function () {
    var stored = this._load("active_request");
    if (!stored) return false;
    this.connect(stored, this._partialFor(stored.channelId));
    return true;
  };
  Client.prototype.reconnectWithBackend = function () { return this.resume(); };

  Client.prototype._partialFor = function (channelId) {
    var partial = this._load("active_partial");
    return partial && partial.channelId === channelId
      ? { lastSeq: partial.lastSeq, text: partial.text, steps: partial.steps } : {};
  };

  /* ---------------------------------------------------------------- Phoenix v2 */

  Client.prototype._send = function (frame) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(frame));
  };

  Client.prototype._open = function () {
    if (this._ws || this.done || !this.request) return;
    var self = this, opened = false;
    this._emit("connecting");
    var ws = new WebSocket(socketEndpoint(this.request.websocketUrl, this.request.wsToken));
    this._ws = ws;
    ws.onopen = function () {
      opened = true;
      self._attempt = 0;
      self._emit("connected");
      self._join();
      self._startHeartbeat();
    };
    ws.onmessage = function (ev) { self._onFrame(ev.data); };
    ws.onclose = function (ev) {
      if (self._ws !== ws) return;
      self._ws = null;
      self._stopHeartbeat();
      if (self.done) return;
      self._emit("disconnected", ev.reason || "connection lost");
      self._scheduleReconnect(!opened);
    };
  };

  Client.prototype._scheduleReconnect = function (refused) {
    var self = this;
    var delay = this._attempt < RECONNECT.length ? RECONNECT[this._attempt] : 5000;
    this._attempt += 1;
    clearTimeout(this._timer);
    this._timer = setTimeout(function () {
      if (!refused && self._attempt < 3) { self._open(); return; }
      // Refused (expired, or another live socket holds the token): ask for a fresh one.
      self._post(self.options.reconnectUrl, { channel_id: self.request.channelId }, false).then(function (a) {
        self.request.wsToken = a.ws_token;
        self.request.websocketUrl = a.websocket_url;
        self._saveActive();
        self._open();
      }, function (err) {
        if (err.status === 403 || err.status === 404) self._fail("the request is no longer available");
        else self._scheduleReconnect(true);
      });
    }, delay);
  };

  Client.prototype._join = function () {
    this._joinRef = String(++this._ref);
    var payload = {};
    if (this.lastSeq !== null) payload.last_seq = this.lastSeq;
    if (this.options.coalesce) payload.coalesce = true;
    this._send([this._joinRef, this._joinRef, this.request.topic, "phx_join", payload]);
  };

  Client.prototype._startHeartbeat = function () {
    var self = this;
    this._stopHeartbeat();
    this._hb = setInterval(function () {
      if (self._hbRef) {  // the last one was never answered: the socket is dead
        var ws = self._ws;
        if (ws) ws.close();
        return;
      }
      self._hbRef = String(++self._ref);
      self._send([null, self._hbRef, "phoenix", "heartbeat", {}]);
    }, this.options.heartbeatInterval);
  };

  Client.prototype._stopHeartbeat = function () {
    clearInterval(this._hb);
    this._hbRef = null;
  };

  Client.prototype._onFrame = function (text) {
    var msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (!Array.isArray(msg) || msg.length !== 5) return;
    var ref = msg[1], topic = msg[2], event = msg[3], payload = msg[4] || {};
    if (event === "phx_reply") {
      if (ref === this._hbRef) { this._hbRef = null; return; }
      if (ref === this._joinRef) this._onJoinReply(payload);
      return;
    }
    if (!this.request || topic !== this.request.topic || this.done) return;
    if (event === "phx_error" || event === "phx_close") {
      if (this._ws) this._ws.close();
      return;
    }
    if (typeof payload.seq === "number") {
      if (this.lastSeq !== null && payload.seq <= this.lastSeq) return;  // already seen
      this.lastSeq = payload.seq;
    }
    if (event === "tokens") {
      this.text += payload.data || "";
      this._emit("token", payload);
      this._emit("text", this.text);
      this._savePartialSoon();
    } else if (event === "status") {
      if (payload.status === "failover" && payload.reset) {
        this.text = "";
        this._emit("reset", payload);
        this._emit("text", this.text);
      }
      if (payload.status === "started") this._setSteps([["process", "loading"]]);
      if (payload.status === "streaming") this._setSteps([["process", "loading"], ["receive", "loading"]]);
      this._emit("status", payload);
      this._savePartialSoon();
    } else if (event === "tool_call") {
      this._emit("tool_call", payload);
    } else if (event === "response") {
      this._onResponse(payload);
    } else if (event === "error") {
      var message = payload.message || "request failed";
      this._setSteps([["process", "error"], ["receive", "error"], ["complete", "error"]], { errorMessage: message });
      this.response = { status: "error", error: { message: message } };
      this._emit("error", message);
      this._finish();
    }
  };

  Client.prototype._onJoinReply = function (payload) {
    if (payload.status === "ok") {
      this._emit("channel_joined");
      if (!this._joinedOnce) {
        this._joinedOnce = true;
        this._setSteps([["queue", "success"]]);
      }
      return;
    }
    var reason = (payload.response && payload.response.reason) || "join refused";
    this._emit("channel_error", reason);
    this._fail(reason);
  };

  Client.prototype._onResponse = function (r) {
    var kind = responseKind(r);
    var duration = r.meta && r.meta.duration_ms;
    if (kind === "ai_generated") {
      this._setSteps([["process", "success"]], { duration: duration });
      this._setSteps([["backend", "pending"]], { name: "Waiting for backend callback..." });
      this._emit("response", r);
      this._savePartialSoon();
      return;
    }
    if (kind === "error") {
      var message = (r.error && r.error.message) || r.message || "request ended with status " + r.status;
      this._setSteps([["process", "error"], ["receive", "error"], ["complete", "error"]], { errorMessage: message });
    } else {
      this._setSteps([["queue", "success"], ["process", "success"]], { duration: duration });
      if (kind === "completed") this._setSteps([["backend", "success"]], { name: "Backend processed" });
      else if (this._step("backend")) this._setSteps([["backend", "success"]], { name: "No backend processing needed" });
      this._setSteps([["receive", "success"], ["complete", "success"]]);
    }
    this.response = r;
    this._emit("response", r);
    if (kind === "error") this._emit("error", (r.error && r.error.message) || r.status);
    this._finish();
  };

  Client.prototype._step = function (id) {
    for (var i = 0; i < this.steps.length; i++) if (this.steps[i].id === id) return this.steps[i];
    return null;
  };

  Client.prototype._setSteps = function (changes, extra) {
    extra = extra || {};
    for (var i = 0; i < changes.length; i++) {
      var id = changes[i][0], status = changes[i][1], step = this._step(id);
      if (!step) {
        step = { id: id, name: extra.name || id, status: "pending" };
        var at = this.steps.findIndex(function (s) { return s.id === "receive"; });
        this.steps.splice(at < 0 ? this.steps.length : at, 0, step);
      }
      if (step.status === status && !extra.name) continue;
      step.status = status;
      if (extra.name) step.name = extra.name;
      if (extra.duration != null) step.duration = extra.duration;
      if (extra.errorMessage) step.errorMessage = extra.errorMessage;
      this._emit("step", Object.assign({}, step));
    }
  };

  Client.prototype._finish = function () {
    this.done = true;
    this._clear();
    this._emit("done", this.response);
    this.disconnect();
  };

  Client.prototype._fail = function (message) {
    if (this.done) return;
    this.response = { status: "error", error: { message: message } };
    this._emit("error", message);
    this._finish();
  };

  /* ---------------------------------------------------------------- persistence */

  Client.prototype._key = function (name) { return this.options.storageKeyPrefix + name; };
  Client.prototype._load = function (name) {
    try { return JSON.parse(localStorage.getItem(this._key(name)) || "null"); } catch (e) { return null; }
  };
  Client.prototype._store = function (name, value) {
    if (!this.options.persist) return;
    try { localStorage.setItem(this._key(name), JSON.stringify(value)); } catch (e) { /* quota */ }
  };
  Client.prototype._saveActive = function () {
    var r = this.request;
    this._store("active_request", { channelId: r.channelId, wsToken: r.wsToken, timestamp: Date.now(),
                                    websocketUrl: r.websocketUrl, websocketChannel: r.websocketChannel });
  };
  Client.prototype._savePartial = function () {
    clearTimeout(this._partialTimer);
    this._partialTimer = null;
    if (!this.request || this.done || this.lastSeq === null) return;
    this._store("active_partial", { channelId: this.request.channelId, lastSeq: this.lastSeq,
                                    text: this.text, steps: this.steps });
  };
  Client.prototype._savePartialSoon = function () {
    if (this._partialTimer || !this.options.persist) return;
    var self = this;
    this._partialTimer = setTimeout(function () { self._savePartial(); }, 250);
  };
  Client.prototype._clear = function () {
    clearTimeout(this._partialTimer);
    this._partialTimer = null;
    try {
      localStorage.removeItem(this._key("active_request"));
      localStorage.removeItem(this._key("active_partial"));
    } catch (e) { /* storage disabled */ }
  };

  /* ---------------------------------------------------------------- the chat widget */

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function renderCard(data) {
    var card = el("div", "mr-card");
    if (!data || typeof data !== "object") return card;
    Object.keys(data).forEach(function (key) {
      if (key === "reply") return;
      var value = data[key];
      var row = el("div", "mr-field");
      row.setAttribute("data-field", key);
      row.appendChild(el("span", "mr-field-name", key.replace(/_/g, " ")));
      var body = el("span", "mr-field-value");
      if (Array.isArray(value)) {
        var list = el("ul");
        value.forEach(function (item) {
          var li = el("li", null, typeof item === "object" && item !== null
            ? (item.task ? item.task + (item.priority ? " (" + item.priority + ")" : "") : JSON.stringify(item))
            : String(item));
          list.appendChild(li);
        });
        body.appendChild(list);
      } else if (value !== null && typeof value === "object") {
        body.textContent = JSON.stringify(value);
      } else {
        body.textContent = String(value);
      }
      row.appendChild(body);
      card.appendChild(row);
    });
    return card;
  }

  function Chat(root, options) {
    this.root = root;
    this.options = options = options || {};
    this.workflows = options.workflows && options.workflows.length ? options.workflows : [{ name: "", label: "Chat" }];
    this.historyKey = (options.storageKeyPrefix || "modelriver_") + "history";
    this.client = new Client(options);
    this._build();
    this._renderHistory();
    this._wire();
    var self = this;
    this.client.resume({ server: !!options.serverResume }).then(function (answer) {
      if (answer) self._beginAssistant(answer.channel_id, true);
    });
  }

  Chat.prototype._build = function () {
    var root = this.root;
    root.classList.add("mr-chat");
    this.history = el("div", "mr-history");
    this.history.setAttribute("role", "log");
    this.history.setAttribute("aria-live", "polite");
    this.stepsPanel = el("ol", "mr-steps");
    this.statusLine = el("div", "mr-status");
    var side = el("aside", "mr-side");
    side.appendChild(el("h3", null, "Steps"));
    side.appendChild(this.stepsPanel);
    side.appendChild(this.statusLine);
    this.form = el("form", "mr-form");
    this.select = el("select", "mr-workflow");
    this.select.name = "workflow";
    var self = this;
    this.workflows.forEach(function (w) {
      var opt = el("option", null, w.label || w.name);
      opt.value = w.name;
      self.select.appendChild(opt);
    });
    if (this.workflows.length < 2) this.select.hidden = true;
    this.input = el("textarea", "mr-input");
    this.input.name = "message";
    this.input.rows = 2;
    this.input.placeholder = this.options.placeholder || "Ask something...";
    this.send = el("button", "mr-send", "Send");
    this.send.type = "submit";
    this.stop = el("button", "mr-stop", "Stop");
    this.stop.type = "button";
    this.stop.hidden = true;
    this.form.appendChild(this.select);
    this.form.appendChild(this.input);
    this.form.appendChild(this.send);
    this.form.appendChild(this.stop);
    var main = el("div", "mr-main");
    main.appendChild(this.history);
    main.appendChild(this.form);
    root.appendChild(main);
    root.appendChild(side);
    this._renderSteps(this.client.steps);
  };

  Chat.prototype._loadHistory = function () {
    try { return JSON.parse(localStorage.getItem(this.historyKey) || "[]"); } catch (e) { return []; }
  };
  Chat.prototype._saveHistory = function (items) {
    try { localStorage.setItem(this.historyKey, JSON.stringify(items.slice(-50))); } catch (e) { /* quota */ }
  };

  Chat.prototype._renderHistory = function () {
    var self = this;
    this._loadHistory().forEach(function (m) {
      if (m.role === "user") self._userBubble(m.content);
      else self._finalBubble(self._assistantBubble(m.channelId), m);
    });
  };

  Chat.prototype._userBubble = function (text) {
    var node = el("div", "mr-msg mr-user");
    node.appendChild(el("div", "mr-text", text));
    this.history.appendChild(node);
    this.history.scrollTop = this.history.scrollHeight;
  };

  Chat.prototype._assistantBubble = function (channelId) {
    var node = el("div", "mr-msg mr-assistant");
    if (channelId) node.setAttribute("data-channel-id", channelId);
    node.appendChild(el("div", "mr-text"));
    this.history.appendChild(node);
    return node;
  };

  Chat.prototype._finalBubble = function (node, m) {
    node.setAttribute("data-state", m.state || "done");
    var data = m.data && typeof m.data === "object" ? m.data : null;
    var text = data && typeof data.reply === "string" ? data.reply : (m.content || "");
    node.querySelector(".mr-text").textContent = text;
    if (m.error) node.querySelector(".mr-text").textContent = m.error;
    var old = node.querySelector(".mr-card");
    if (old) old.remove();
    if (data) node.appendChild(renderCard(data));
  };

  Chat.prototype._beginAssistant = function (channelId, resumed) {
    this.current = this._assistantBubble(channelId);
    this.current.setAttribute("data-state", "streaming");
    if (resumed) this.current.setAttribute("data-resumed", "true");
    if (resumed && this.client.lastSeq !== null) this.current.setAttribute("data-resume-seq", this.client.lastSeq);
    this.current.querySelector(".mr-text").textContent = this.client.text;
    this.stop.hidden = false;
    this.send.disabled = true;
    this._renderSteps(this.client.steps);
  };

  Chat.prototype._wire = function () {
    var self = this, client = this.client;
    this.form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = self.input.value.trim();
      if (!text || client.hasPendingRequest()) return;
      self.input.value = "";
      var items = self._loadHistory();
      var messages = items.slice(-20).map(function (m) {
        return { role: m.role, content: m.role === "assistant" && m.data && m.data.reply ? m.data.reply : (m.content || "") };
      }).filter(function (m) { return m.content; });
      messages.push({ role: "user", content: text });
      items.push({ role: "user", content: text });
      self._saveHistory(items);
      self._userBubble(text);
      self.send.disabled = true;
      client.start({ messages: messages, workflow: self.select.value || undefined }).then(function (answer) {
        self._beginAssistant(answer.channel_id, false);
      }, function (err) {
        self.send.disabled = false;
        var node = self._assistantBubble(null);
        self._finalBubble(node, { state: "error", error: "Could not start: " + err.message });
      });
    });
    this.input.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); self.form.requestSubmit(); }
    });
    this.stop.addEventListener("click", function () { client.cancel(); });
    client.on("text", function (text) {
      if (!self.current) return;
      self.current.querySelector(".mr-text").textContent = text;
      self.history.scrollTop = self.history.scrollHeight;
    });
    client.on("step", function () { self._renderSteps(client.steps); });
    client.on("status", function (s) {
      self.statusLine.textContent = s.status + (s.provider ? " · " + s.provider : "") + (s.model ? " / " + s.model : "");
    });
    client.on("connected", function () { self.root.setAttribute("data-connected", "true"); });
    client.on("disconnected", function () { self.root.setAttribute("data-connected", "false"); });
    client.on("response", function (r) {
      if (!self.current || r.status !== "ai_generated") return;
      self.current.setAttribute("data-state", "ai_generated");
      var card = self.current.querySelector(".mr-card");
      if (card) card.remove();
      self.current.appendChild(renderCard(r.data));
      self.statusLine.textContent = "AI done · waiting for the backend";
    });
    client.on("done", function (r) {
      self._renderSteps(client.steps);
      self.stop.hidden = true;
      self.send.disabled = false;
      var node = self.current || self._assistantBubble(r && r.channel_id);
      self.current = null;
      r = r || { status: "error" };
      var kind = responseKind(r);
      var cancelled = r.status === "cancelled";
      var entry = {
        role: "assistant", channelId: node.getAttribute("data-channel-id"),
        state: kind === "error" ? (cancelled ? "cancelled" : "error") : "done",
        content: typeof r.content === "string" ? r.content : client.text,
        data: r.data && typeof r.data === "object" ? r.data : null,
        status: r.status,
      };
      if (kind === "error") entry.error = cancelled ? "Stopped." : "Error: " + ((r.error && r.error.message) || r.status);
      node.setAttribute("data-streamed", client.text);
      node.setAttribute("data-status", r.status || "");
      self._finalBubble(node, entry);
      self.statusLine.textContent = entry.state;
      var items = self._loadHistory();
      if (!items.some(function (m) { return m.channelId && m.channelId === entry.channelId; })) {
        items.push(entry);
        self._saveHistory(items);
      }
    });
  };

  Chat.prototype._renderSteps = function (steps) {
    var panel = this.stepsPanel;
    panel.textContent = "";
    steps.forEach(function (s) {
      var li = el("li", "mr-step mr-step-" + s.status, s.name + (s.duration != null ? " (" + s.duration + " ms)" : ""));
      li.setAttribute("data-step", s.id);
      li.setAttribute("data-status", s.status);
      panel.appendChild(li);
    });
  };

  function autoInit() {
    var nodes = document.querySelectorAll("[data-modelriver-chat]");
    Array.prototype.forEach.call(nodes, function (node) {
      if (node.__modelriver) return;
      var config = {};
      var source = node.getAttribute("data-config-id");
      if (source) {
        var script = document.getElementById(source);
        if (script) config = JSON.parse(script.textContent);
      }
      node.__modelriver = new Chat(node, config);
    });
  }

  global.ModelRiver = { Client: Client, Chat: Chat, socketEndpoint: socketEndpoint, autoInit: autoInit };
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoInit);
    else autoInit();
  }
})(typeof window !== "undefined" ? window : this);
