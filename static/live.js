/* Live updates: applies server-rendered fragments pushed over /live.
   No dependencies, no inline code (CSP script-src 'self'). Pages work without it.
   Contract: <body data-live-cursor="N"> plus elements with [data-live][id] make a page live. */
(() => {
  "use strict";

  const body = document.body;
  const root = document.documentElement;
  const raw = body && body.getAttribute("data-live-cursor");
  let cursor = raw === null || raw.trim() === "" ? NaN : Number(raw);
  if (!Number.isSafeInteger(cursor) || !document.querySelector("[data-live][id]")) return;

  const URL_ = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/live";
  const BASE = 500, CAP = 30000, STABLE = 10000, MAX_REGIONS = 200, FLASH_MS = 1500;
  const FIELDS = "input, textarea, select";
  const TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline", ended: "Signed out" };
  const TITLE = {
    connecting: "Connecting to live updates",
    live: "Live: this page updates by itself",
    reconnecting: "Live updates interrupted, reconnecting",
    offline: "Offline: live updates resume when the connection returns",
    ended: "Your session has ended. Reload the page to sign in again."
  };

  let ws = null;          // current socket (CONNECTING or OPEN), null otherwise
  let state = "";
  let ended = false;      // 4001: never reconnect
  let everOpened = false;
  let attempt = 0;        // backoff exponent
  let resumes = 0;        // 4008s in a row without a stable connection
  let timer = 0, openTimer = 0, retryTimer = 0;
  let openedAt = 0;
  let pushes = 0;
  const pending = new Map();        // key (id of the element to overwrite) -> latest deferred op
  const submitted = new WeakSet();  // forms whose current values were submitted

  /* ---- Connection indicator ---- */

  const status = document.getElementById("live-status") || document.createElement("span");
  status.id = "live-status";
  status.className = "live-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");

  function mountStatus() {
    if (status.isConnected) return;
    const bar = document.querySelector(".topbar");
    if (!bar) return body.appendChild(status);
    const menu = bar.querySelector(":scope > .account-menu");
    bar.insertBefore(status, menu);
  }

  function setState(s) {
    if (s === state) return;
    state = s;
    root.dataset.live = s;
    status.dataset.state = s;
    status.title = TITLE[s];
    const text = document.createElement("span");
    text.className = "live-status-text";
    text.textContent = TEXT[s];
    status.replaceChildren(text);
    if (s === "ended") {
      const note = document.createElement("span");
      note.className = "visually-hidden";
      note.textContent = " Your session has ended.";
      const again = document.createElement("button");
      again.type = "button";
      again.className = "live-status-reload";
      again.textContent = "Reload";
      again.addEventListener("click", () => { location.reload(); });
      status.append(note, " ", again);
    }
    mountStatus();
  }

  /* ---- Socket and reconnection ---- */

  function offline() { return navigator.onLine === false; }

  function connect() {
    clearTimeout(timer);
    timer = 0;
    if (ended || ws) return;
    setState(offline() ? "offline" : everOpened || attempt > 0 ? "reconnecting" : "connecting");
    let sock;
    try {
      sock = new WebSocket(URL_);
    } catch (e) {
      console.warn("live: cannot open socket", e);
      return backoff();
    }
    ws = sock;
    let opened = false;
    // A handshake that hangs (proxy black hole) counts as a failed attempt.
    openTimer = setTimeout(() => {
      if (ws === sock && !opened) { drop(); backoff(); }
    }, 15000);
    sock.onopen = () => {
      if (ws !== sock) return;
      clearTimeout(openTimer);
      opened = everOpened = true;
      openedAt = Date.now();
      setState("live");
      send({ type: "hello", cursor: cursor, regions: regions() });
    };
    sock.onmessage = (ev) => {
      if (ws === sock) receive(ev.data);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearTimeout(openTimer);
      closed(ev.code, opened);
    };
    sock.onerror = () => { /* a close event follows */ };
  }

  // Forget the current socket without reacting to its close.
  function drop() {
    const sock = ws;
    ws = null;
    clearTimeout(openTimer);
    if (sock) {
      try { sock.close(1000); } catch (e) { /* already closing */ }
    }
  }

  function closed(code, opened) {
    if (opened && Date.now() - openedAt > STABLE) { attempt = 0; resumes = 0; }
    if (code === 4001) return end();
    if (code === 4008 && ++resumes <= 5) {
      setState(offline() ? "offline" : "reconnecting");
      return schedule(200 + Math.random() * 800);
    }
    if (!opened && !offline()) return signedIn().then((yes) => (yes ? backoff() : end()));
    backoff();
  }

  function end() {
    ended = true;
    clearTimeout(timer);
    setState("ended");
  }

  // A refused handshake looks the same to a page whether the server is down or
  // the session ended (401 before the upgrade). The page itself tells them
  // apart: without a session it redirects to the sign-in page.
  function signedIn() {
    return fetch(location.href, { redirect: "manual", credentials: "same-origin", cache: "no-store" })
      .then((r) => r.type !== "opaqueredirect")
      .catch(() => true);
  }

  // Full jitter: random in [0, min(cap, base * 2^attempt)).
  function backoff() {
    setState(offline() ? "offline" : "reconnecting");
    const ceiling = Math.min(CAP, BASE * 2 ** Math.min(attempt, 16));
    attempt++;
    schedule(Math.random() * ceiling);
  }

  function schedule(delay) {
    if (ended) return;
    clearTimeout(timer);
    // While the browser says it is offline, only look again now and then;
    // the `online` event brings us back promptly.
    timer = setTimeout(connect, offline() ? Math.max(delay, CAP) : delay);
  }

  function soon() {
    if (ended || ws) return;
    schedule(Math.random() * 250);
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  // Only ids the server accepts (letters, digits, - and _; at most 120), so that
  // the first 200 sent are all usable.
  function regions() {
    const ids = new Set();
    document.querySelectorAll("[data-live][id]").forEach((el) => {
      if (ids.size < MAX_REGIONS && /^[A-Za-z0-9_-]{1,120}$/.test(el.id)) ids.add(el.id);
    });
    return Array.from(ids);
  }

  window.addEventListener("online", soon);
  window.addEventListener("offline", () => {
    if (ended) return;
    drop(); // the socket is most likely dead; start clean when the network returns
    setState("offline");
    schedule(CAP);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") soon();
  });
  window.addEventListener("pagehide", () => {
    clearTimeout(timer);
    drop();
  });
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted) soon();
  });

  // A machine that slept with the page visible may hold a socket that is dead
  // without knowing it: if a visible page misses its ticks, start over.
  let lastTick = Date.now(), lastVisible = document.visibilityState === "visible";
  setInterval(() => {
    const now = Date.now(), visible = document.visibilityState === "visible";
    if (visible && lastVisible && now - lastTick > 30000 && ws && !ended) {
      drop();
      schedule(Math.random() * 1000);
    }
    lastTick = now;
    lastVisible = visible;
  }, 5000);

  /* ---- Pushes ---- */

  function receive(data) {
    if (typeof data !== "string") return console.warn("live: ignoring a binary frame");
    let push;
    try {
      push = JSON.parse(data);
    } catch (e) {
      return console.warn("live: unreadable push", e);
    }
    if (!push || typeof push !== "object") return console.warn("live: unexpected push", push);
    const ops = Array.isArray(push.ops) ? push.ops : [];
    for (const op of ops) {
      try {
        apply(op);
      } catch (e) {
        console.warn("live: op failed", op, e);
      }
    }
    // The server counts acks and reads ids as 64-bit integers: ack every push,
    // with the current cursor should a push ever lack a usable id.
    const id = Number(push.id);
    if (Number.isSafeInteger(id)) cursor = Math.max(cursor, id);
    else console.warn("live: push without an integer id", push.id);
    send({ type: "ack", id: Number.isSafeInteger(id) ? id : cursor });
    pushes++;
    root.dataset.livePushes = String(pushes);
    if (pending.size && !retryTimer) retryTimer = setInterval(flush, 2000);
  }

  function byId(id) {
    return typeof id === "string" && id ? document.getElementById(id) : null;
  }

  // Pushed regions are shared by every session of a customer, so their forms
  // come without a CSRF token: they get this page's own.
  function parse(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) {
      tpl.content.querySelectorAll('form input[name="csrf_token"]').forEach((input) => {
        const action = new URL(input.closest("form").getAttribute("action") || "", location.href);
        if (!input.value && action.origin === location.origin) input.value = meta.content;
      });
    }
    return tpl.content;
  }

  function apply(op) {
    if (!op || typeof op !== "object") throw new Error("not an op");
    const kind = op.op;
    let el;
    if (kind === "remove") {
      el = byId(op.target);
      if (!el) return;
      if (busy(el)) return defer(op.target, op);
      pending.delete(op.target);
      el.remove();
      return;
    }
    if (kind !== "replace" && kind !== "prepend" && kind !== "append") throw new Error("unknown op " + kind);
    if (typeof op.html !== "string") throw new Error(kind + " without html");
    const frag = parse(op.html);
    if (kind === "replace") {
      el = byId(op.target);
      return el ? replace(el, frag, op.target, op) : undefined;
    }
    // Insertions are idempotent: a root whose id is already in the page replaces it.
    const first = frag.firstElementChild;
    const existing = first && byId(first.id);
    if (existing) return replace(existing, frag, first.id, op);
    const parent = byId(op.target);
    if (!parent) return;
    const added = Array.from(frag.children);
    if (kind === "prepend") parent.prepend(frag); else parent.append(frag);
    added.forEach(flash);
  }

  function replace(el, frag, key, op) {
    if (busy(el)) return defer(key, op);
    pending.delete(key);
    const x = window.scrollX, y = window.scrollY;
    const active = document.activeElement;
    const hint = active && active !== body && el.contains(active) ? focusHint(el, active) : null;
    const open = new Map();
    detailsIn(el).forEach((d) => { open.set(d.id, d.open); });
    const added = Array.from(frag.children);
    el.replaceWith(frag);
    added.forEach((n) => {
      detailsIn(n).forEach((d) => { if (open.has(d.id)) d.open = open.get(d.id); });
    });
    if (hint) refocus(hint, added, el.id);
    added.forEach(flash);
    if (window.scrollX !== x || window.scrollY !== y) window.scrollTo(x, y);
  }

  function detailsIn(el) {
    const list = Array.from(el.querySelectorAll("details[id]"));
    if (el.matches("details[id]")) list.unshift(el);
    return list;
  }

  // Where focus was: its id, else its path of child indexes and tag from the region root.
  function focusHint(el, active) {
    const path = [];
    for (let n = active; n && n !== el; n = n.parentElement) {
      path.unshift(Array.prototype.indexOf.call(n.parentElement.children, n));
    }
    return { id: active.id, path: path, tag: active.tagName };
  }

  function refocus(hint, added, rootId) {
    let target = null;
    if (hint.id) {
      for (let i = 0; i < added.length && !target; i++) {
        target = added[i].id === hint.id ? added[i] : added[i].querySelector("#" + CSS.escape(hint.id));
      }
    } else {
      let n = added.find((a) => a.id === rootId) || added[0];
      for (let j = 0; n && j < hint.path.length; j++) n = n.children[hint.path[j]];
      if (n && n.tagName === hint.tag) target = n;
    }
    if (target && typeof target.focus === "function") target.focus({ preventScroll: true });
  }

  function flash(el) {
    el.classList.add("live-updated");
    setTimeout(() => { el.classList.remove("live-updated"); }, FLASH_MS);
  }

  /* ---- Never overwrite what the user is doing ---- */

  function editing(a) {
    if (a.isContentEditable) return true;
    return a.matches(FIELDS) && !/^(button|submit|reset|image|hidden)$/.test(a.type) && !(a.form && submitted.has(a.form));
  }

  function busy(el) {
    const a = document.activeElement;
    if (a && a !== body && el.contains(a) && editing(a)) return true;
    if (el.matches(FIELDS) && dirty(el)) return true;
    return Array.from(el.querySelectorAll(FIELDS)).some(dirty);
  }

  function dirty(f) {
    if (f.form && submitted.has(f.form)) return false;
    if (f.tagName === "SELECT") {
      const o = Array.from(f.options);
      if (f.multiple || f.size > 1) return o.some((x) => x.selected !== x.defaultSelected);
      // A single select without a `selected` option shows its first enabled option.
      let d = o.findLastIndex((x) => x.defaultSelected);
      if (d < 0) d = o.findIndex((x) => !x.disabled);
      return f.selectedIndex !== d;
    }
    if (f.tagName === "TEXTAREA") return f.value !== f.defaultValue;
    if (f.type === "checkbox" || f.type === "radio") return f.checked !== f.defaultChecked;
    if (f.type === "file") return !!(f.files && f.files.length);
    if (f.value === f.defaultValue) return false;
    // Sanitised types (range, color, number...) show a value that differs from the
    // attribute without any edit: compare with what an untouched field would show.
    const probe = document.createElement("input");
    ["type", "min", "max", "step", "multiple", "value"].forEach((a) => {
      if (f.hasAttribute(a)) probe.setAttribute(a, f.getAttribute(a));
    });
    return f.value !== probe.value;
  }

  function defer(key, op) {
    pending.delete(key); // keep insertion order = recency
    pending.set(key, op);
  }

  function flush() {
    const ops = Array.from(pending.values());
    pending.clear();
    ops.forEach((op) => {
      try {
        apply(op); // defers again if still busy
      } catch (e) {
        console.warn("live: deferred op failed", op, e);
      }
    });
    if (!pending.size && retryTimer) {
      clearInterval(retryTimer);
      retryTimer = 0;
    }
  }

  function flushSoon() {
    if (pending.size) setTimeout(flush, 0);
  }

  // focusout: activeElement settles after the event, hence flushSoon.
  document.addEventListener("focusout", flushSoon);
  document.addEventListener("reset", flushSoon);
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    // After the event: the browser has taken the form's data; replacing it now is safe.
    setTimeout(() => {
      if (ev.defaultPrevented) return;
      submitted.add(form);
      flush();
    }, 0);
  });
  document.addEventListener("input", (ev) => {
    const form = ev.target && ev.target.form;
    if (form) submitted.delete(form);
  });

  root.dataset.livePushes = "0";
  connect();
})();
