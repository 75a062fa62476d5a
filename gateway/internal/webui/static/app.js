// natter web chat: the full dialect of docs/protocol.md over a WebSocket
// (one JSON frame per text message). docs/web.md describes the page.
//
// The Client below is a port of tools/internal/chatclient: it keeps a
// connection up (jittered backoff, the next URL of the list each time),
// resumes the session with the resume token and the last seq shown, drops
// seqs already shown, acknowledges what it has shown (cumulatively), and
// sends an outbox in order, one command at a time, sending chats again with
// the same cid after a lost connection. The UI part only renders; message
// text is only ever set with textContent.
"use strict";

const M = {
  LOGIN: 1, LOGIN_ACK: 2, LOGINOUT: 3, REG: 4, REG_ACK: 5, ONE_CHAT: 6, ADD_FRIEND: 7,
  CREATE_GROUP: 8, ADD_GROUP: 9, GROUP_CHAT: 10, PING: 11, ACK: 13, REPLY: 14, KICKED: 15,
  PRESENCE: 16, LIST_FRIENDS: 18, LEAVE_GROUP: 19, LIST_GROUPS: 20, LIST_MEMBERS: 21, RECONNECT: 22,
};
const E = {
  OK: 0, LOGIN_INVALID: 1, NOT_LOGGED_IN: 103, SESSION_REPLACED: 108, FLOOD: 109,
  UNAVAILABLE: 110, GATEWAY_STOPPING: 113, NOT_MEMBER: 115, SESSION_EXPIRED: 117,
};
const CFG = {
  minBackoff: 200,      // ms, the first reconnect delay (plus jitter)
  maxBackoff: 5000,     // ms, the delay doubles up to this
  timeout: 15000,       // ms a request waits for its answer before the connection is replaced
  connectTimeout: 5000, // ms a WebSocket may take to open
  heartbeat: 30000,     // ms between PINGs (a gateway's --idle-timeout)
  sessionlessGrace: 2000,
};
const OUTCOME_UNKNOWN = "the connection was lost before the answer came; it may or may not have been done";

// wsURLs returns the WebSocket URLs to try: ?ws=url1,url2 (ws: or wss:
// only), else /ws of the host that served the page.
function wsURLs() {
  const list = (new URLSearchParams(location.search).get("ws") || "")
    .split(",").map((s) => s.trim()).filter((s) => /^wss?:\/\//.test(s));
  if (list.length > 0) return list;
  return [(location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws"];
}

// randomID returns 128 random bits in hex (crypto.randomUUID needs a
// secure context, which a page on plain http from another host is not).
function randomID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// now returns the local time as the original client wrote it.
function now() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// Client is the connection manager with a session, an outbox and acks. ui
// receives events: connection(state), loggedIn(ack), resumed(ack),
// message(frame), presence(id, state), sessionEnded(reason), outbox(n).
class Client {
  constructor(urls, ui) {
    this.urls = urls;
    this.ui = ui;
    this.next = 0;
    this.ws = null;       // the current WebSocket, null while there is none
    this.open = false;    // ws is open
    this.live = false;    // ws carries the session of creds
    this.creds = null;    // {id, password, token}; null while logged out
    this.shown = 0;       // the last seq shown
    this.acked = 0;       // the last seq acknowledged
    this.gated = false;   // logging out: show nothing more
    this.outbox = [];     // commands in order; outbox[0] may be in flight
    this.inflight = null;
    this.reqs = new Map(); // reqid -> {ws, cb, timer}
    this.reqSeq = 0;
    this.backoff = 0;
    this.upSince = 0;
    this.moving = false;  // the gateway sent RECONNECT
    this.waiters = [];    // callbacks waiting for an open connection
    this.ackTimer = 0;
    this.pingTimer = 0;
  }

  start() { this.connect(); }

  connect() {
    const url = this.urls[this.next++ % this.urls.length];
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.retry(`cannot connect to ${url}: ${e.message}`);
      return;
    }
    this.ws = ws;
    this.open = this.live = false;
    this.ui.connection({ up: false, connecting: true, url });
    const openTimer = setTimeout(() => { if (ws.readyState === WebSocket.CONNECTING) ws.close(); }, CFG.connectTimeout);
    ws.onopen = () => { clearTimeout(openTimer); if (ws === this.ws) this.opened(ws, url); };
    ws.onmessage = (ev) => { if (ws === this.ws) this.onFrame(ws, ev.data); };
    ws.onerror = () => {}; // a close follows
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (ws === this.ws) this.closed(ws, ev.code === 1000 || ev.code === 1005 ? "the connection was closed" : `the connection was lost (${ev.code})`);
    };
  }

  opened(ws, url) {
    console.info(`natter: connected to ${url}`);
    this.open = true;
    this.upSince = Date.now();
    this.pingTimer = setInterval(() => this.send(ws, { msgid: M.PING }), CFG.heartbeat);
    if (this.creds) {
      this.resume(ws, url, false);
    } else {
      this.ui.connection({ up: true, url, resumed: false });
    }
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f(true));
  }

  closed(ws, why) {
    this.ws = null;
    this.open = this.live = false;
    clearInterval(this.pingTimer);
    for (const [reqid, r] of this.reqs) {
      if (r.ws !== ws) continue;
      this.reqs.delete(reqid);
      clearTimeout(r.timer);
      r.cb(null);
    }
    if (this.upSince && Date.now() - this.upSince > 10000) this.backoff = 0; // it worked for a while
    const moved = this.moving;
    if (moved) this.backoff = 0; // asked to move: go at once (with jitter)
    this.upSince = 0;
    this.moving = false;
    this.retry(why, moved);
  }

  // drop gives up on ws at once (a close handshake with a stuck server
  // could take long) and starts over.
  drop(ws, why) {
    if (ws !== this.ws) return;
    ws.close();
    this.closed(ws, why);
  }

  retry(why, moved) {
    const d = this.backoff === 0 ? CFG.minBackoff : Math.min(2 * this.backoff, CFG.maxBackoff);
    this.backoff = d;
    const wait = d / 2 + Math.random() * (d / 2); // jitter: the clients of a dead gateway do not all come back at once
    console.info(`natter: ${why}; trying again in ${Math.round(wait)} ms`);
    this.ui.connection({ up: false, why, retry: wait, moved });
    setTimeout(() => this.connect(), wait);
  }

  send(ws, frame) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // request sends frame with a reqid on ws; cb gets the answer, or null if
  // the connection was lost first. No answer within CFG.timeout replaces
  // the connection.
  request(ws, frame, cb) {
    const reqid = "r" + (++this.reqSeq);
    if (!this.send(ws, { ...frame, reqid })) {
      setTimeout(() => cb(null), 0);
      return;
    }
    const timer = setTimeout(() => this.drop(ws, "no answer from the server"), CFG.timeout);
    this.reqs.set(reqid, { ws, cb, timer });
  }

  // whenOpen calls f(true) once there is an open connection, or f(false)
  // after CFG.timeout.
  whenOpen(f) {
    if (this.open) { f(true); return; }
    let done = false;
    const once = (ok) => { if (!done) { done = true; f(ok); } };
    this.waiters.push(once);
    setTimeout(() => once(false), CFG.timeout);
  }

  onFrame(ws, data) {
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f === null || typeof f !== "object") return;
    if (f.reqid !== undefined && this.reqs.has(f.reqid)) {
      const r = this.reqs.get(f.reqid);
      this.reqs.delete(f.reqid);
      clearTimeout(r.timer);
      r.cb(f);
      return;
    }
    switch (f.msgid) {
      case M.ONE_CHAT:
      case M.GROUP_CHAT:
        if (!this.live || this.gated) return; // a later login replays it
        if (typeof f.seq === "number") {
          if (f.seq <= this.shown) return; // shown already (a replay overlapping what we had)
          this.ui.message(f);
          this.shown = f.seq;
          this.kickAck();
        } else {
          this.ui.message(f);
        }
        return;
      case M.PRESENCE:
        this.ui.presence(f.id, f.state);
        return;
      case M.KICKED:
        this.endSession("This account logged in somewhere else.");
        return;
      case M.RECONNECT:
        // 113: this gateway is going away, go to another at once; 118: it
        // is full, back off as usual.
        this.moving = f.errno === E.GATEWAY_STOPPING;
        this.drop(ws, `the server asked to reconnect elsewhere: ${f.errmsg}`);
        return;
    }
  }

  kickAck() {
    if (!this.ackTimer) this.ackTimer = setTimeout(() => { this.ackTimer = 0; this.flushAck(); }, 50);
  }

  flushAck() {
    if (this.live && this.shown > this.acked && this.send(this.ws, { msgid: M.ACK, seq: this.shown })) {
      this.acked = this.shown; // if it is lost, the next login carries lastseq
    }
  }

  // setSession takes the session of a successful LOGIN_ACK, on the
  // frame's turn: before any push that follows it.
  setSession(ws, cr, f) {
    if (f.token) cr.token = f.token;
    this.creds = cr;
    this.live = true;
    this.gated = false;
    this.shown = Math.max(this.shown, f.lastseq || 0);
    this.acked = this.shown; // the gateway stored lastseq as acknowledged
  }

  // register creates an account; done(errorText, id).
  register(name, password, done) {
    this.whenOpen((ok) => {
      if (!ok) { done("not connected; try again in a moment"); return; }
      this.request(this.ws, { msgid: M.REG, name, password }, (f) => {
        if (!f) done("the connection was lost; try again");
        else if (f.errno === E.LOGIN_INVALID) done("this name is already taken");
        else if (f.errno !== E.OK) done(f.errmsg || `error ${f.errno}`);
        else done(null, f.id);
      });
    });
  }

  // login logs in with a password; done(errorText). From then on lost
  // connections are replaced and the session resumed until logout.
  login(id, password, done) {
    this.whenOpen((ok) => {
      if (!ok) { done("not connected; try again in a moment"); return; }
      if (this.creds) { done("already logged in"); return; }
      const ws = this.ws;
      const cr = { id, password, token: "" };
      this.shown = this.acked = 0; // a new login: the server knows what was acknowledged
      this.request(ws, { msgid: M.LOGIN, id, password, dialect: "full", lastseq: 0 }, (f) => {
        if (!f) { done("the connection was lost; try again"); return; }
        if (f.msgid !== M.LOGIN_ACK || f.errno !== E.OK) { done(f.errmsg || `error ${f.errno}`); return; }
        this.setSession(ws, cr, f);
        this.ui.loggedIn(f);
        this.ui.connection({ up: true, resumed: false, url: ws.url });
        done(null);
        this.pump();
      });
    });
  }

  // resume logs in again on a new connection with the resume token (then
  // the password, if the token is refused) and the last seq shown.
  resume(ws, url, withPassword) {
    const cr = this.creds;
    const req = withPassword
      ? { msgid: M.LOGIN, id: cr.id, password: cr.password, dialect: "full", lastseq: this.shown }
      : { msgid: M.LOGIN, id: cr.id, token: cr.token, dialect: "full", lastseq: this.shown };
    this.request(ws, req, (f) => {
      if (!f || ws !== this.ws) return; // the connection is gone: closed() retries
      if (this.creds !== cr) return;     // logged out meanwhile
      if (f.errno === E.OK && f.msgid === M.LOGIN_ACK) {
        console.info(`natter: session resumed after seq ${f.lastseq}, ${f.pending} pending`);
        this.setSession(ws, cr, f);
        this.ui.resumed(f);
        this.ui.connection({ up: true, resumed: true, url });
        this.pump();
        this.kickAck();
        return;
      }
      if (f.errno === E.LOGIN_INVALID && this.loggingOut()) {
        // A LOGINOUT whose answer was lost revoked the token: the logout is done.
        this.endSession(null);
        this.ui.connection({ up: true, url });
        return;
      }
      if (f.errno === E.LOGIN_INVALID && !withPassword && cr.password) {
        this.resume(ws, url, true); // the token expired: the password still works
        return;
      }
      if (f.errno === E.LOGIN_INVALID || f.errno === E.SESSION_REPLACED) {
        this.endSession(f.errno === E.SESSION_REPLACED
          ? "This account logged in somewhere else."
          : `The session could not be resumed: ${f.errmsg}`);
        this.ui.connection({ up: true, url });
        return;
      }
      // A service did not answer, the gateway is stopping, ...: try again.
      this.drop(ws, `the session was not resumed: errno ${f.errno} ${f.errmsg}`);
    });
  }

  loggingOut() { return this.inflight !== null && this.inflight.kind === "logout"; }

  // endSession forgets the session, fails the queued commands and tells
  // the UI (unless reason is null: a logout).
  endSession(reason) {
    if (!this.creds) return;
    this.creds = null;
    this.live = this.gated = false;
    this.shown = this.acked = 0;
    const box = this.outbox;
    this.outbox = [];
    this.inflight = null;
    box.forEach((p) => p.done({ error: "not logged in" }));
    this.ui.outbox(0);
    this.ui.sessionEnded(reason);
  }

  // submit queues a command: {req, kind, resend, done}. done gets the
  // answer frame, or {error} for a local failure. The outbox is sent in
  // order while the session is up.
  submit(cmd) {
    const done = cmd.done;
    let finished = false;
    cmd.done = (r) => { if (!finished) { finished = true; done(r); } };
    if (!this.creds) { cmd.done({ error: "not logged in" }); return; }
    cmd.tries = 0;
    cmd.unavailable = 0;
    this.outbox.push(cmd);
    this.ui.outbox(this.chatsQueued());
    this.pump();
  }

  pop(p, result) {
    const i = this.outbox.indexOf(p);
    if (i >= 0) this.outbox.splice(i, 1);
    if (this.inflight === p) this.inflight = null;
    this.ui.outbox(this.chatsQueued());
    p.done(result);
    this.pump();
  }

  chatsQueued() { return this.outbox.filter((p) => p.kind === "chat").length; }

  // pump sends the head of the outbox if nothing is in flight.
  pump() {
    if (!this.live || this.inflight || this.outbox.length === 0) return;
    const p = this.outbox[0];
    const ws = this.ws;
    this.inflight = p;
    p.tries++;
    if (p.kind === "logout") {
      // Everything shown is acknowledged before the session ends, and
      // nothing more is shown (it comes at the next login).
      this.gated = true;
      this.send(ws, { msgid: M.ACK, seq: this.shown });
    }
    if (p.sending) p.sending();
    this.request(ws, p.req, (f) => this.answered(p, ws, f));
  }

  answered(p, ws, f) {
    if (this.inflight !== p) return;
    if (!f) {
      // No answer: the connection died (closed() replaces it).
      this.inflight = null;
      if (p.kind === "logout") { this.endSession(null); p.done({}); return; }
      if (!p.resend) { this.pop(p, { error: OUTCOME_UNKNOWN }); return; }
      return; // sent again once the session is resumed
    }
    switch (f.errno) {
      case E.NOT_LOGGED_IN:
        // This connection's session is gone (a KICKED usually follows):
        // stop using it, and replace it if nothing comes.
        this.inflight = null;
        if (ws === this.ws) this.live = false;
        setTimeout(() => this.drop(ws, "the session was lost"), CFG.sessionlessGrace);
        return;
      case E.SESSION_EXPIRED:
      case E.GATEWAY_STOPPING:
        this.inflight = null;
        this.drop(ws, f.errmsg); // sent again once the session is resumed
        return;
      case E.FLOOD:
        this.inflight = null;
        setTimeout(() => this.pump(), 1000); // dropped unread: again, slower
        return;
      case E.UNAVAILABLE:
        if (!p.resend) { this.pop(p, { error: OUTCOME_UNKNOWN }); return; }
        if (p.unavailable < 5) {
          p.unavailable++;
          this.inflight = null;
          setTimeout(() => this.pump(), 500);
          return;
        }
    }
    if (p.kind === "leave" && p.tries > 1 && f.errno === E.NOT_MEMBER) {
      f = { ...f, errno: E.OK, errmsg: "" }; // the first try did it
    }
    if (p.kind === "logout") {
      this.inflight = null;
      if (f.errno === E.OK) {
        this.outbox.splice(this.outbox.indexOf(p), 1);
        this.endSession(null);
        p.done(f);
        return;
      }
      this.gated = false;
    }
    this.pop(p, f);
  }

  // logout ends the session: with a LOGINOUT after what is queued when
  // connected, at once (locally) when not.
  logout(done) {
    if (!this.creds) { done(); return; }
    if (!this.live) {
      this.endSession(null);
      done();
      return;
    }
    this.submit({ req: { msgid: M.LOGINOUT }, kind: "logout", resend: true, done: () => { this.endSession(null); done(); } });
  }
}

// ---- the page ----

const $ = (id) => document.getElementById(id);

// el makes an element with a class and text (textContent: never HTML).
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// atEnd reports whether a log is scrolled to (about) its end.
function atEnd(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

// sentence ends a server's message with one full stop.
function sentence(text) {
  return String(text).replace(/[\s.!]+$/, "") + ".";
}

function str(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

class Page {
  constructor() {
    this.me = null;              // {id, name}
    this.friends = new Map();    // id -> {id, name, state}
    this.groups = new Map();     // id -> {id, groupname, groupdesc, users}
    this.convs = new Map();      // "u1"/"g1" -> conversation
    this.current = null;         // the conversation shown
    this.backTimer = 0;
    this.connState = "connecting";
    this.connText = "Connecting…";
    this.client = new Client(wsURLs(), this);
    this.queued = 0;
    this.friendsAt = 0;
    this.bind();
  }

  bind() {
    $("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.doLogin(); });
    $("register-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.doRegister(); });
    $("logout").addEventListener("click", () => this.doLogout());
    $("addfriend-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.doAddFriend(); });
    $("creategroup-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.doCreateGroup(); });
    $("joingroup-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.doJoinGroup(); });
    $("leave-group").addEventListener("click", () => this.doLeaveGroup());
    $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); this.doSend(); });
    // Someone may have added us meanwhile (nothing tells us): look again
    // when the user comes back to the page, at most every 10 s.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState !== "visible" || !this.client.live || Date.now() - this.friendsAt < 10000) return;
      this.friendsAt = Date.now();
      this.refreshFriends();
    });
    $("notice-close").addEventListener("click", () => {
      this.notice("");
      (this.current ? $("composer-input") : document.querySelector("#chat:not([hidden]) button, #login-id")).focus();
    });
  }

  // notice shows the result of an action (or an error) until the next one.
  notice(text, error) {
    $("notice").textContent = text;
    const box = $("notice-box");
    box.classList.toggle("shown", !!text);
    box.classList.toggle("error", !!error);
    $("notice-close").hidden = !text;
  }

  // ---- Client events ----

  connection(s) {
    const prev = this.connState;
    clearTimeout(this.backTimer);
    let state = "online";
    let text = "Online";
    if (!s.up) {
      state = prev === "connecting" ? "connecting" : "offline";
      if (s.connecting) {
        if (state === "offline") return; // the text says when already
        text = "Connecting…";
      } else {
        const when = s.retry < 1000 ? "" : ` in ${Math.round(s.retry / 1000)} s`;
        text = state === "connecting" ? `Cannot reach the server — retrying${when}…` : `Offline — reconnecting${when}…`;
        if (s.moved) text = "This server is going away — moving to another one…";
      }
    } else if (s.resumed) {
      state = "back";
      text = "Back online";
      this.backTimer = setTimeout(() => this.setConn("online", "Online"), 5000);
    }
    this.setConn(state, text);
  }

  setConn(state, text) {
    // Screen readers hear the changes of state, not every retry.
    if (state !== this.connState && state === "offline") this.announce("Connection lost. Reconnecting; what you send waits until it is back.");
    if (state !== this.connState && state === "back") this.announce("Back online.");
    this.connState = state;
    this.connText = text;
    this.renderConn();
  }

  // announce tells screen readers (the same text twice is heard twice).
  announce(text) {
    const a = $("announce");
    a.textContent = "";
    setTimeout(() => { a.textContent = text; }, 50);
  }

  outbox(n) {
    this.queued = n;
    this.renderConn();
  }

  renderConn() {
    const c = $("conn");
    const offline = this.connState === "offline";
    c.dataset.state = this.connState;
    c.textContent = offline && this.queued > 0
      ? `${this.connText} ${this.queued} waiting to be sent.`
      : this.connText;
    if (offline !== document.body.classList.contains("offline")) {
      // The offline hint takes room from the log: keep its end in view.
      const log = this.current && this.current.log;
      const stick = log && atEnd(log);
      document.body.classList.toggle("offline", offline);
      if (stick) log.scrollTop = log.scrollHeight;
      this.renderHeader();
    }
  }

  loggedIn(f) {
    this.me = { id: f.id, name: f.name };
    $("me-name").textContent = `${f.name} (id ${f.id})`;
    $("me").hidden = false;
    $("skip").hidden = false;
    $("welcome").hidden = true;
    $("chat").hidden = false;
    this.setFriends(f.friends || []);
    this.setGroups(f.groups || []);
    this.notice(f.pending > 0 ? `${f.pending} message${f.pending === 1 ? "" : "s"} arrived while you were away.` : "");
    $("login-password").value = "";
    const first = document.querySelector("#friends button, #groups button");
    (first || $("addfriend-id")).focus();
  }

  resumed(f) {
    // Friends' states may have changed while this page was offline.
    this.setFriends(f.friends || []);
    this.setGroups(f.groups || []);
  }

  sessionEnded(reason) {
    this.me = null;
    this.friends.clear();
    this.groups.clear();
    this.convs.clear();
    this.current = null;
    for (const id of ["friends", "groups", "logs"]) $(id).replaceChildren();
    this.showConversation(null);
    $("me").hidden = true;
    $("skip").hidden = true;
    $("chat").hidden = true;
    $("welcome").hidden = false;
    this.notice(reason || "", !!reason);
    $("login-id").focus();
  }

  presence(id, state) {
    const f = this.friends.get(id);
    if (!f) { this.refreshFriends(); return; } // a new friend
    f.state = state;
    this.renderPeer(this.conv("u", id));
    if (this.current && this.current.key === "u" + id) this.renderHeader();
  }

  message(f) {
    let conv;
    if (f.msgid === M.GROUP_CHAT) {
      if (!this.groups.has(f.groupid)) {
        this.groups.set(f.groupid, { id: f.groupid, groupname: `group ${f.groupid}`, groupdesc: "", users: [] });
        this.refreshGroups();
      }
      conv = this.conv("g", f.groupid);
    } else {
      conv = this.conv("u", f.id, f.name);
      if (!this.friends.has(f.id)) this.refreshFriends(); // maybe they just added us
    }
    this.addMessage(conv, { from: f.name, fromId: f.id, text: str(f.msg), time: str(f.time || ""), seq: f.seq });
    if (conv !== this.current) {
      conv.unread++;
      this.renderPeer(conv);
      this.announce(`New message from ${f.name}` + (conv.kind === "g" ? ` in ${conv.title()}` : ""));
    }
  }

  // ---- friends, groups, conversations ----

  setFriends(list) {
    this.friends.clear();
    for (const f of list) this.friends.set(f.id, { id: f.id, name: f.name, state: f.state });
    for (const f of list) this.renderPeer(this.conv("u", f.id));
    for (const c of this.convs.values()) if (c.kind === "u") this.renderPeer(c);
    $("friends-empty").hidden = this.friends.size > 0;
    this.renderHeader();
  }

  setGroups(list) {
    const old = this.groups;
    this.groups = new Map();
    for (const g of list) this.groups.set(g.id, { id: g.id, groupname: g.groupname, groupdesc: g.groupdesc || "", users: g.users || [] });
    for (const g of list) this.renderPeer(this.conv("g", g.id));
    for (const id of old.keys()) if (!this.groups.has(id)) this.dropConv("g" + id);
    $("groups-empty").hidden = this.groups.size > 0;
    this.renderHeader();
  }

  refreshFriends() {
    if (this.friendsPending) return;
    this.friendsPending = true;
    this.client.submit({ req: { msgid: M.LIST_FRIENDS }, kind: "list", resend: true, done: (f) => {
      this.friendsPending = false;
      if (f.errno === E.OK && f.friends) this.setFriends(f.friends);
    } });
  }

  refreshGroups() {
    this.client.submit({ req: { msgid: M.LIST_GROUPS }, kind: "list", resend: true, done: (f) => {
      if (f.errno === E.OK && f.groups) this.setGroups(f.groups);
    } });
  }

  // refreshMembers updates a group's member list (others join and leave
  // without telling us).
  refreshMembers(id) {
    this.client.submit({ req: { msgid: M.LIST_MEMBERS, groupid: id }, kind: "list", resend: true, done: (f) => {
      const g = this.groups.get(id);
      if (f.errno !== E.OK || !f.group || !g) return;
      g.users = f.group.users || [];
      if (this.current && this.current.key === "g" + id) this.renderHeader();
    } });
  }

  // conv returns the conversation with a friend ("u") or a group ("g"),
  // making it (with its log and its button) if needed.
  conv(kind, id, name) {
    const key = kind + id;
    let c = this.convs.get(key);
    if (c) return c;
    const page = this;
    c = {
      key, kind, id, unread: 0, name: name || "",
      title() {
        if (kind === "g") {
          const g = page.groups.get(id);
          return g ? g.groupname : `group ${id}`;
        }
        const f = page.friends.get(id);
        return f ? f.name : (this.name || `user ${id}`);
      },
    };
    c.log = el("ol", "log");
    c.log.setAttribute("role", "log");
    c.log.setAttribute("aria-live", "polite");
    c.log.setAttribute("aria-relevant", "additions");
    c.log.hidden = true;
    c.log.dataset.conv = key;
    $("logs").append(c.log);
    c.item = el("li");
    c.button = el("button", "peer");
    c.button.type = "button";
    c.button.dataset.conv = key;
    c.button.addEventListener("click", () => {
      if (!$("notice-box").classList.contains("error")) this.notice("");
      this.showConversation(c);
      $("composer-input").focus();
      if (c.kind === "g" && this.client.live) this.refreshMembers(c.id);
    });
    c.item.append(c.button);
    $(kind === "g" ? "groups" : "friends").append(c.item);
    this.convs.set(key, c);
    return c;
  }

  dropConv(key) {
    const c = this.convs.get(key);
    if (!c) return;
    c.item.remove();
    c.log.remove();
    this.convs.delete(key);
    if (this.current === c) this.showConversation(null);
  }

  // renderPeer updates a conversation's button: name, state, unread.
  renderPeer(c) {
    const b = c.button;
    c.log.setAttribute("aria-label", c.kind === "g" ? `Messages in ${c.title()}` : `Messages with ${c.title()}`);
    const parts = [];
    if (c.kind === "u") {
      const f = this.friends.get(c.id);
      const state = f ? f.state : "not a friend";
      b.dataset.state = f ? f.state : "stranger";
      parts.push(el("span", "dot"), el("span", "name", c.title()), el("span", "state", state));
    } else {
      parts.push(el("span", "name", c.title()), el("span", "state", `#${c.id}`));
    }
    if (c.unread > 0) parts.push(el("span", "unread", `${c.unread} new`));
    b.replaceChildren(...parts);
    b.querySelector(".dot")?.setAttribute("aria-hidden", "true");
    if (c === this.current) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }

  showConversation(c) {
    const prev = this.current;
    this.current = c;
    for (const x of this.convs.values()) x.log.hidden = x !== c;
    if (prev && prev !== c && this.convs.has(prev.key)) this.renderPeer(prev);
    const input = $("composer-input");
    input.disabled = $("composer-send").disabled = !c;
    $("leave-group").hidden = !c || c.kind !== "g";
    if (c) {
      c.unread = 0;
      this.renderPeer(c);
      c.log.scrollTop = c.log.scrollHeight;
    }
    this.renderHeader();
  }

  // renderHeader shows who the current conversation is with.
  renderHeader() {
    const c = this.current;
    if (!c) {
      $("conv-title").textContent = "Choose a friend or a group";
      $("conv-info").textContent = "";
      $("composer-label").textContent = "Message";
      return;
    }
    $("conv-title").textContent = c.title();
    $("composer-label").textContent = `Message to ${c.title()}`;
    if (c.kind === "u") {
      const f = this.friends.get(c.id);
      const state = !f ? "not a friend" : this.connState === "offline" ? `${f.state} (when last connected)` : f.state;
      $("conv-info").textContent = `user ${c.id} · ${state}`;
    } else {
      const g = this.groups.get(c.id);
      const names = (g ? g.users : []).map((u) => u.name).join(", ");
      $("conv-info").textContent = [`group ${c.id}`, g && g.groupdesc, names && `members: ${names}`].filter(Boolean).join(" · ");
    }
  }

  // addMessage appends a message to a conversation's log and returns its
  // status element.
  addMessage(c, m) {
    const li = el("li", m.mine ? "msg mine" : "msg");
    if (m.seq !== undefined) li.dataset.seq = m.seq;
    const meta = el("p", "meta");
    meta.append(el("span", "from", m.mine ? "you" : m.from), " ", el("time", "", m.time));
    const status = el("span", "status");
    if (m.mine) meta.append(" ", status);
    li.append(meta, el("p", "text", m.text));
    const stick = m.mine || atEnd(c.log); // what you write is always shown
    c.log.append(li);
    if (c === this.current && stick) c.log.scrollTop = c.log.scrollHeight;
    return status;
  }

  // ---- actions ----

  doRegister() {
    const name = $("register-name").value.trim();
    const pw = $("register-password").value;
    const out = $("register-result");
    if (!name || !pw) { out.textContent = "Enter a name and a password."; return; }
    out.textContent = "Registering…";
    this.client.register(name, pw, (err, id) => {
      if (err) { out.textContent = sentence(`Could not register: ${err}`); return; }
      out.textContent = `Registered ${name}: your user id is ${id}. Log in with it.`;
      $("register-password").value = "";
      $("login-id").value = String(id);
    });
  }

  doLogin() {
    const id = Number($("login-id").value.trim());
    const pw = $("login-password").value;
    if (!Number.isSafeInteger(id) || id <= 0 || !pw) { this.notice("Enter your user id (a number) and your password.", true); return; }
    this.notice("Logging in…");
    this.client.login(id, pw, (err) => { if (err) this.notice(sentence(`Could not log in: ${err}`), true); });
  }

  doLogout() {
    this.client.logout(() => {});
  }

  // command submits a request and reports failures; ok gets the answer.
  command(req, kind, resend, ok) {
    this.client.submit({ req, kind, resend, done: (f) => {
      if (f.error) this.notice(sentence(`Failed: ${f.error}`), true);
      else if (f.errno !== E.OK) this.notice(sentence(`Failed: ${f.errmsg || "error " + f.errno}`), true);
      else ok(f);
    } });
  }

  positiveID(input) {
    const n = Number(input.value.trim());
    if (!Number.isSafeInteger(n) || n <= 0) {
      this.notice("An id is a positive number.", true);
      input.focus();
      return 0;
    }
    return n;
  }

  doAddFriend() {
    const input = $("addfriend-id");
    const id = this.positiveID(input);
    if (!id) return;
    input.value = "";
    this.notice(`Adding user ${id} as a friend…`);
    this.command({ msgid: M.ADD_FRIEND, friendid: id }, "addfriend", true, () => {
      this.client.submit({ req: { msgid: M.LIST_FRIENDS }, kind: "list", resend: true, done: (f) => {
        if (f.errno === E.OK && f.friends) this.setFriends(f.friends);
        const fr = this.friends.get(id);
        this.notice(`${fr ? fr.name : "user " + id} (id ${id}) is now your friend.`);
      } });
    });
  }

  doCreateGroup() {
    const name = $("creategroup-name").value.trim();
    const desc = $("creategroup-desc").value.trim();
    if (!name) { this.notice("A group needs a name.", true); $("creategroup-name").focus(); return; }
    $("creategroup-name").value = $("creategroup-desc").value = "";
    this.notice(`Creating the group ${name}…`);
    // Not sent again after a lost answer: a second one would make a second group.
    this.command({ msgid: M.CREATE_GROUP, groupname: name, groupdesc: desc }, "creategroup", false, (f) => {
      this.groups.set(f.groupid, { id: f.groupid, groupname: name, groupdesc: desc, users: [{ ...this.me, state: "online", role: "creator" }] });
      $("groups-empty").hidden = true;
      const c = this.conv("g", f.groupid);
      this.renderPeer(c);
      this.notice(`Created the group ${name}: its id is ${f.groupid}. Others join with it.`);
      this.showConversation(c);
    });
  }

  doJoinGroup() {
    const input = $("joingroup-id");
    const id = this.positiveID(input);
    if (!id) return;
    input.value = "";
    this.notice(`Joining group ${id}…`);
    this.command({ msgid: M.ADD_GROUP, groupid: id }, "join", true, () => {
      this.command({ msgid: M.LIST_MEMBERS, groupid: id }, "list", true, (f) => {
        const g = f.group || { id, groupname: `group ${id}`, groupdesc: "", users: [] };
        this.groups.set(id, { id, groupname: g.groupname, groupdesc: g.groupdesc || "", users: g.users || [] });
        $("groups-empty").hidden = true;
        const c = this.conv("g", id);
        this.renderPeer(c);
        this.notice(`Joined the group ${g.groupname} (id ${id}).`);
        this.showConversation(c);
      });
    });
  }

  doLeaveGroup() {
    const c = this.current;
    if (!c || c.kind !== "g") return;
    const title = c.title();
    this.command({ msgid: M.LEAVE_GROUP, groupid: c.id }, "leave", true, () => {
      this.groups.delete(c.id);
      this.dropConv(c.key);
      $("groups-empty").hidden = this.groups.size > 0;
      this.notice(`You left the group ${title}.`);
      $("joingroup-id").focus();
    });
  }

  doSend() {
    const c = this.current;
    const input = $("composer-input");
    const text = input.value;
    if (!c || text.trim() === "") return;
    input.value = "";
    const time = now();
    // The cid makes sending it again after a lost connection safe.
    const req = c.kind === "g"
      ? { msgid: M.GROUP_CHAT, groupid: c.id, msg: text, time, cid: randomID() }
      : { msgid: M.ONE_CHAT, toid: c.id, msg: text, time, cid: randomID() };
    const status = this.addMessage(c, { mine: true, text, time });
    const li = status.closest("li");
    const set = (state, label) => { li.dataset.status = state; status.textContent = label; };
    set(this.client.live ? "sending" : "queued", this.client.live ? "sending…" : "waiting for the connection");
    this.client.submit({ req, kind: "chat", resend: true,
      sending: () => set("sending", "sending…"),
      done: (f) => {
        if (f.error) set("failed", `not sent: ${f.error}`);
        else if (f.errno !== E.OK) set("failed", `not sent: ${f.errmsg || "error " + f.errno}`);
        else if (f.refused && f.refused.length) set("sent", `sent; not stored for ${this.memberNames(c.id, f.refused)}: inbox full`);
        else set("sent", "sent");
      } });
  }

  // memberNames names the users ids of group gid, as far as its member
  // list knows them.
  memberNames(gid, ids) {
    const g = this.groups.get(gid);
    const byID = new Map((g ? g.users : []).map((u) => [u.id, u.name]));
    return ids.map((id) => byID.get(id) || `user ${id}`).join(", ");
  }
}

const page = new Page();
page.client.start();
