/* django_modelriver's browser client and chat widget: rendering over the shared browser module.
 *
 *   const client = new ModelRiver.Client({apiBaseUrl: "/modelriver", csrfToken});
 *   client.on("token", (p) => ...); client.on("response", (r) => ...);
 *   await client.start({message: "Hi", workflow: "demo-chat"});   // or: await client.resume()
 *
 * The protocol lives in modelriver-link.js (shipped beside this file, a copy of core's
 * modelriver/browser/modelriver-link.js): the Phoenix link (heartbeat, join timeout, reconnect
 * and rejoin backoffs, join_ref, rejoin with {last_seq} and seq dedupe), the request state (text,
 * failover, steps, terminal rules) and the persistence of PROTOCOL §5 (`<prefix>active_request`,
 * ignored after 5 minutes, and the progress under `<prefix>progress_<channel>`, so a reload
 * rejoins with {last_seq}). {% modelriver_assets %} loads it as a module before this classic
 * script; loaded alone, this script imports it from beside itself.
 * This file adds the HTTP side (start, cancel, a fresh token from the reconnect view) and renders.
 * Methods (the SDK's where they exist): start, connect, resume (= reconnectWithBackend), reconnect,
 * cancel, disconnect, reset, destroy, getState, hasPendingRequest, on (returns an unsubscribe), off.
 * Events: connecting, connected, disconnected, channel_joined, channel_error, step, status,
 * token, text, reset, tool_call, response, error, done.
 * ModelRiver.Chat(element, options) is the ready chat widget built on it. Chat.prototype.renderText
 * is the one place an answer is drawn: Markdown through markdown-it (`html: false`: no raw HTML
 * from the model) and DOMPurify, both vendored beside this file (vendor/, copied by
 * scripts/sync_browser.py); links open in a new tab with rel="noopener noreferrer"; a remote image
 * is shown as a link, not fetched, unless options.allowRemoteImages. Without those libraries the
 * answer is set as plain text.
 * Structured answers (a workflow with a schema): the reply streams as prose (the prose field the
 * gateway names, never the raw JSON) and the card fills in as fields arrive, redrawn at most every
 * PARTIAL_MS; the final response's data replaces both.
 */
(function (global) {
  "use strict";

  var script = typeof document !== "undefined" ? document.currentScript : null;
  var here = script && script.src ? script.src : (global.location ? global.location.href : "");
  var PARTIAL_MS = 45; // a structured answer's view is redrawn at most this often while it streams

  // markdown-it and DOMPurify: markdown.js (a module the chat template loads before this script)
  // puts them on globalThis.ModelRiverMarkdown; else they are imported from vendor/ now and used
  // once they arrived (plain text until then, or if they cannot load).
  var markdownLibs = global.ModelRiverMarkdown || null;
  if (markdownLibs === null && typeof document !== "undefined") {
    Promise.all([import(new URL("vendor/markdown-it.min.mjs", here).href),
      import(new URL("vendor/purify.es.mjs", here).href)]).then(function (mods) {
      markdownLibs = { MarkdownIt: mods[0].default, DOMPurify: mods[1].default };
    }, function (err) {
      console.warn("[modelriver] Markdown libraries unavailable; answers are shown as text", err);
    });
  }

  function boot(link) {
    var responseKind = link.responseKind;

    function cookie(name) {
      var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
      return m ? decodeURIComponent(m[1]) : null;
    }

    /* -------------------------------------------------------------- the client */

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
        heartbeatInterval: options.heartbeatInterval || link.HEARTBEAT_MS,
        coalesce: options.coalesce !== false,
        debug: !!options.debug,
      };
      this.persistence = this.options.persist ? new link.Persistence({ prefix: this.options.storageKeyPrefix }) : null;
      this._handlers = {};
      this._stream = null;
      this._refreshing = false;
      var self = this;
      if (typeof window !== "undefined") {
        window.addEventListener("pagehide", function () { if (self._stream) self._stream.saveProgress(); });
      }
    }

    Object.defineProperties(Client.prototype, {
      request: { get: function () { return this._stream ? this._stream.request : null; } },
      text: { get: function () { return this._stream ? this._stream.state.text : ""; } },
      lastSeq: { get: function () { return this._stream ? this._stream.lastSeq : null; } },
      steps: { get: function () { return (this._stream ? this._stream.state : new link.RequestState()).steps; } },
      response: { get: function () { return this._stream ? this._stream.state.result : null; } },
      structured: { get: function () { return this._stream ? this._stream.state.structured : false; } },
      partial: { get: function () { return this._stream ? this._stream.state.partial : null; } },
      prose: { get: function () { return this._stream ? this._stream.state.prose : ""; } },
      proseField: { get: function () {
        var state = this._stream ? this._stream.state : null;
        if (!state || !state.structured) return null;
        return state.proseAnnounced ? state.proseField : link.proseKey(state.partial);
      } },
      done: { get: function () { return this._stream ? this._stream.state.done : false; } },
    });

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
               connected: !!(this._stream && this._stream.connected), done: this.done, response: this.response };
    };
    Client.prototype.hasPendingRequest = function () { return !!this._stream && !this.done; };

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
      this._stream = null;
      return this._post(this.options.startUrl, body, true).then(function (answer) {
        self.connect(answer);
        return answer;
      });
    };

    /** Listen to a request: an async/reconnect answer (snake_case) or the SDK's camelCase shape.
     * `resume` ({lastSeq, text, steps}) starts from that progress; by default, from the stored one. */
    Client.prototype.connect = function (info, resume) {
      this.disconnect();
      var progress = resume && typeof resume.lastSeq === "number" ? resume : null;
      var stream = new link.RequestStream(info, {
        persistence: this.persistence, progress: progress, saveEveryMs: 250, coalesce: this.options.coalesce,
        heartbeatMs: this.options.heartbeatInterval,
      });
      var self = this;
      this._stream = stream;
      ["connecting", "connected", "channel_joined", "channel_error"].forEach(function (name) {
        stream.on(name, function (arg) { if (self._stream === stream) self._emit(name, arg); });
      });
      stream.on("disconnected", function (detail) {
        if (self._stream !== stream) return;
        self._emit("disconnected", "connection lost");
        // A socket refused at the handshake: the token expired, or another live socket holds it.
        if (!detail.opened) self._refresh(stream);
      });
      stream.on("change", function (change, message) {
        if (self._stream === stream) self._onChange(stream, change, message.event, message.payload);
      });
      stream.start();
    };

    Client.prototype._onChange = function (stream, change, event, payload) {
      var state = stream.state;
      if (event === "tokens" && change.text) this._emit("token", payload);
      if (change.reset) this._emit("reset", payload);
      if (change.text) this._emit("text", state.text);
      for (var i = 0; i < change.steps.length; i++) this._emit("step", change.steps[i]);
      if (event === "status") this._emit("status", payload);
      if (event === "tool_call") this._emit("tool_call", payload);
      if (change.response) this._emit("response", change.response);
      if (change.done) {
        if (responseKind(state.result) === "error") this._emit("error", state.error);
        this._emit("done", state.result);
      }
    };

    /** A fresh socket token from the reconnect view (the backend keeps the key). */
    Client.prototype._refresh = function (stream) {
      if (this._refreshing || stream.done) return;
      this._refreshing = true;
      var self = this;
      this._post(this.options.reconnectUrl, { channel_id: stream.channelId }, false).then(function (answer) {
        self._refreshing = false;
        if (answer && answer.ws_token) stream.updateToken({ wsToken: answer.ws_token, websocketUrl: answer.websocket_url });
      }, function (err) {
        self._refreshing = false;  // unreachable: the next refused socket asks again
        if (err.status === 403 || err.status === 404) stream.fail("the request is no longer available");
      });
    };

    /** Resume the persisted request (or, with {server: true}, the session's latest one). */
    Client.prototype.resume = function (opts) {
      opts = opts || {};
      var stored = this.persistence ? this.persistence.loadActive() : null;  // null after 5 minutes
      if (!stored && !opts.server) return Promise.resolve(null);
      var self = this;
      var body = stored ? { channel_id: stored.channelId } : {};
      return this._post(this.options.reconnectUrl, body, false).then(function (answer) {
        if (!answer || !answer.channel_id) return null;  // 204: nothing in flight
        self.connect(answer);
        return answer;
      }, function (err) {
        if ((err.status === 403 || err.status === 404) && stored && self.persistence) self.persistence.clear(stored.channelId);
        return null;
      });
    };

    /** Cancel the request upstream (the server answers with a terminal "cancelled" response). */
    Client.prototype.cancel = function () {
      if (!this._stream || this.done) return Promise.resolve(null);
      return this._post(this.options.cancelUrl, { channel_id: this._stream.channelId }, true);
    };

    /** Close the socket; the request stays remembered (reconnect() or a reload picks it up). */
    Client.prototype.disconnect = function () {
      if (this._stream) this._stream.close();
    };

    Client.prototype.destroy = function () { this.disconnect(); this.off(); };

    /** Forget the current request: disconnect, clear the persisted state, back to idle. */
    Client.prototype.reset = function () {
      this.disconnect();
      if (this.persistence) {
        var stored = this.persistence.loadActive();
        if (this._stream) this.persistence.clear(this._stream.channelId);
        if (stored) this.persistence.clear(stored.channelId);
      }
      this._stream = null;
    };

    /** The official SDK's names: reconnect with the stored token, or with a fresh one from the backend. */
    Client.prototype.reconnect = function () {
      var stored = this.persistence ? this.persistence.loadActive() : null;
      if (!stored) return false;
      this.connect(stored);
      return true;
    };
    Client.prototype.reconnectWithBackend = function () { return this.resume(); };

    /* ---------------------------------------------------------------- the chat widget */

    function el(tag, cls, text) {
      var node = document.createElement(tag);
      if (cls) node.className = cls;
      if (text != null) node.textContent = text;
      return node;
    }

    // One value of a card, as text nodes: lists as <ul>, objects as "key: value" lines (an action
    // item as its task and priority), everything else as its string.
    function renderValue(value) {
      if (Array.isArray(value)) {
        var list = el("ul");
        value.forEach(function (item) {
          var li = el("li");
          li.appendChild(renderValue(item));
          list.appendChild(li);
        });
        return list;
      }
      if (value !== null && typeof value === "object") {
        if (typeof value.task === "string") {
          return el("span", null, value.task + (value.priority ? " (" + value.priority + ")" : ""));
        }
        var box = el("span", "mr-object");
        Object.keys(value).forEach(function (key) {
          var line = el("span", "mr-object-field");
          line.appendChild(el("span", "mr-object-name", key.replace(/_/g, " ") + ": "));
          line.appendChild(renderValue(value[key]));
          box.appendChild(line);
        });
        return box;
      }
      return document.createTextNode(String(value));
    }

    /** A structured answer's fields (all but its prose field) as a card, one row per field. */
    function renderCard(data, proseField) {
      var card = el("div", "mr-card");
      if (!data || typeof data !== "object" || Array.isArray(data)) return card;
      var skip = proseField === undefined ? link.proseKey(data) : proseField;
      Object.keys(data).forEach(function (key) {
        if (key === skip) return;
        var row = el("div", "mr-field");
        row.setAttribute("data-field", key);
        row.appendChild(el("span", "mr-field-name", key.replace(/_/g, " ")));
        var body = el("span", "mr-field-value");
        body.appendChild(renderValue(data[key]));
        row.appendChild(body);
        card.appendChild(row);
      });
      return card;
    }

    function isRemote(url) {
      try {
        return new URL(url, global.location.href).origin !== global.location.origin;
      } catch (e) {
        return true;
      }
    }

    /** A Markdown renderer: markdown-it without raw HTML, then DOMPurify; returns a fragment. */
    function markdownRenderer(libs, options) {
      var md = new libs.MarkdownIt({ html: false, linkify: true });
      var allowRemote = !!options.allowRemoteImages;
      var image = md.renderer.rules.image;
      md.renderer.rules.image = function (tokens, idx, opts, env, self) {
        var src = tokens[idx].attrGet("src") || "";
        if (allowRemote || !isRemote(src)) return image(tokens, idx, opts, env, self);
        var alt = self.renderInlineAsText(tokens[idx].children || [], opts, env) || src;
        return '<a href="' + md.utils.escapeHtml(src) + '" data-image="true">' + md.utils.escapeHtml(alt) + "</a>";
      };
      var purifier = libs.DOMPurify(global);
      purifier.addHook("afterSanitizeAttributes", function (node) {
        if (node.tagName === "A" && node.hasAttribute("href")) {
          node.setAttribute("target", "_blank");
          node.setAttribute("rel", "noopener noreferrer");
        }
        if (node.tagName === "IMG" && !allowRemote && isRemote(node.getAttribute("src") || "")) {
          node.removeAttribute("src");
          node.removeAttribute("srcset");
        }
      });
      return function (text) {
        var fragment = purifier.sanitize(md.render(text), { RETURN_DOM_FRAGMENT: true, ADD_ATTR: ["target"] });
        Array.prototype.slice.call(fragment.childNodes).forEach(function (child) {
          if (child.nodeType === 3 && !child.nodeValue.trim()) fragment.removeChild(child);
        });
        return fragment;
      };
    }

    function Chat(root, options) {
      this.root = root;
      this.options = options = options || {};
      this.workflows = options.workflows && options.workflows.length ? options.workflows : [{ name: "", label: "Chat" }];
      this.historyKey = (options.storageKeyPrefix || "modelriver_") + "history";
      this.client = new Client(options);
      this._markdown = null;
      this._partialTimer = null;
      this._partialAt = -Infinity;
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
      var field = m.prose !== undefined ? m.prose : link.proseKey(data);
      var text = data && field && typeof data[field] === "string" ? data[field] : (data ? "" : (m.content || ""));
      var textNode = node.querySelector(".mr-text");
      if (m.error) textNode.textContent = m.error;
      else this.renderText(textNode, text, true);
      var old = node.querySelector(".mr-card");
      if (old) old.remove();
      if (data) node.appendChild(renderCard(data, field));
    };

    /** Redraw the streaming bubble of a structured answer: its prose and the card so far. */
    Chat.prototype._drawPartial = function () {
      this._partialTimer = null;
      if (!this.current) return;
      this._partialAt = Date.now();
      var client = this.client;
      this.renderText(this.current.querySelector(".mr-text"), client.prose, false);
      var partial = client.partial;
      var old = this.current.querySelector(".mr-card");
      if (partial && typeof partial === "object" && !Array.isArray(partial)) {
        var card = renderCard(partial, client.proseField);
        if (old) old.replaceWith(card);
        else this.current.appendChild(card);
      } else if (old) {
        old.remove();
      }
      this.history.scrollTop = this.history.scrollHeight;
    };

    // At most every PARTIAL_MS: at once when the last draw is older, else when it is due.
    Chat.prototype._schedulePartial = function () {
      if (this._partialTimer !== null) return;
      var self = this;
      var wait = Math.max(0, this._partialAt + PARTIAL_MS - Date.now());
      if (wait === 0) this._drawPartial();
      else this._partialTimer = setTimeout(function () { self._drawPartial(); }, wait);
    };

    Chat.prototype._beginAssistant = function (channelId, resumed) {
      this.current = this._assistantBubble(channelId);
      this.current.setAttribute("data-state", "streaming");
      if (resumed) this.current.setAttribute("data-resumed", "true");
      if (resumed && this.client.lastSeq !== null) this.current.setAttribute("data-resume-seq", this.client.lastSeq);
      if (this.client.structured) this._drawPartial();
      else this.renderText(this.current.querySelector(".mr-text"), this.client.text, false);
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
        if (client.structured) { self._schedulePartial(); return; } // prose and card, never the JSON
        self.renderText(self.current.querySelector(".mr-text"), text, false);
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
        if (self._partialTimer !== null) clearTimeout(self._partialTimer);
        self._partialTimer = null;
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
        if (client.structured) entry.prose = client.proseField; // the card shows the response's data
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

    /** Draw an answer's text into `node` (streaming and final; `final` is true for the finished
     * answer). Model output is untrusted: Markdown without raw HTML, sanitized; plain text when
     * the Markdown libraries are missing. */
    Chat.prototype.renderText = function (node, text, final) {  // eslint-disable-line no-unused-vars
      if (this._markdown === null && markdownLibs !== null) this._markdown = markdownRenderer(markdownLibs, this.options);
      if (this._markdown === null || !text) {
        node.classList.remove("mr-md");
        node.textContent = text;
        return;
      }
      node.classList.add("mr-md");
      node.replaceChildren(this._markdown(text));
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
          var element = document.getElementById(source);
          if (element) config = JSON.parse(element.textContent);
        }
        node.__modelriver = new Chat(node, config);
      });
    }

    global.ModelRiver = { Client: Client, Chat: Chat, socketEndpoint: link.socketEndpoint, autoInit: autoInit };
    if (typeof document !== "undefined") {
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoInit);
      else autoInit();
    }
  }

  if (global.ModelRiverLink) {
    boot(global.ModelRiverLink);
  } else {
    // Loaded without {% modelriver_assets %}: fetch the module from beside this script.
    import(new URL("modelriver-link.js", here).href).then(function () { boot(global.ModelRiverLink); });
  }
})(typeof window !== "undefined" ? window : this);
