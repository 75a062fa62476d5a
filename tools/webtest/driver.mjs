// driver.mjs drives natter's web page in headless Chromium for the Go test
// tools/internal/e2e/web_test.go, which starts the servers and tells this
// script what to do: one JSON request per line on stdin,
//
//   {"id": 1, "op": "register", "args": {"user": "alice", "name": "alice", "password": "pw"}}
//
// answered by one JSON line on stdout, {"id": 1, "ok": true, "result": ...}
// or {"id": 1, "ok": false, "error": "..."}. Logs go to stderr. Each "user"
// is a browser context of its own (its own cookies and storage), with one
// page. The ops only do what a person would: fill labelled fields, press
// keys and buttons, read what the page shows.
//
// Environment: NATTER_CHROMIUM (default /usr/bin/chromium), NATTER_ARTIFACTS
// (a directory for screenshots; default: none are saved).

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import readline from "node:readline";

const executablePath = process.env.NATTER_CHROMIUM || "/usr/bin/chromium";
const artifacts = process.env.NATTER_ARTIFACTS || "";
const WAIT = 20000; // ms any single wait may take

function log(...a) {
  console.error(new Date().toISOString().slice(11, 23), ...a);
}

// Flags for a closed network: no background connections (which are
// refused here and slow Chromium down), no sandbox (root in a container).
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];
// Playwright gives every launch a fresh profile directory of its own; this
// one is for Chromium's crash reports and the like.
const scratch = mkdtempSync(join(tmpdir(), "natter-webtest-"));
const browser = await chromium.launch({ executablePath, args, headless: true, env: { ...process.env, HOME: scratch } });
log("chromium", browser.version());

const users = new Map(); // name -> {ctx, page, problems}

function user(name) {
  const u = users.get(name);
  if (!u) throw new Error(`no browser for ${name}: open it first`);
  return u;
}

// poll calls fn until it returns a value other than undefined, false or
// null, or fails after timeout with what and the last value.
async function poll(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last !== undefined && last !== false && last !== null) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// messages returns what a conversation's log shows.
function messages(page, conv) {
  return page.evaluate((conv) => {
    const log = document.querySelector(`ol.log[data-conv="${conv}"]`);
    if (!log) return [];
    return Array.from(log.querySelectorAll("li.msg"), (li) => ({
      from: li.querySelector(".from").textContent,
      text: li.querySelector(".text").textContent,
      seq: li.dataset.seq ? Number(li.dataset.seq) : 0,
      mine: li.classList.contains("mine"),
      status: li.dataset.status || "",
      html: li.querySelector(".text").innerHTML,
      elements: li.querySelector(".text").children.length,
    }));
  }, conv);
}

async function connState(page) {
  return page.locator("#conn").getAttribute("data-state");
}

async function select(page, conv) {
  const b = page.locator(`button.peer[data-conv="${conv}"]`);
  await b.click();
  await poll(`conversation ${conv} selected`, async () => (await b.getAttribute("aria-current")) === "true");
}

const ops = {
  // open starts a browser for user and loads url.
  async open({ user: name, url }) {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    const problems = [];
    page.on("console", (m) => {
      log(`${name}'s console ${m.type()}: ${m.text()}`);
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    users.set(name, { ctx, page, problems });
    await page.goto(url);
    // Every state the connection indicator showed, for the test to check.
    await page.evaluate(() => {
      const c = document.getElementById("conn");
      const t0 = Date.now();
      const note = () => window.natterStates.push(`+${Date.now() - t0} ms ${c.dataset.state}: ${c.textContent}`);
      window.natterStates = [];
      note();
      new MutationObserver(note)
        .observe(c, { attributes: true, childList: true, characterData: true, subtree: true });
    });
    await poll(`${name}'s page connected`, async () => (await connState(page)) === "online");
    return { title: await page.title() };
  },

  // register fills the register form and returns the id the page shows.
  async register({ user: name, name: who, password }) {
    const { page } = user(name);
    await page.getByLabel("Name", { exact: true }).fill(who);
    await page.locator("#register-password").fill(password);
    await page.getByRole("button", { name: "Register", exact: true }).click();
    const text = await poll("the new id", async () => {
      const t = await page.locator("#register-result").textContent();
      return /your user id is \d+/.test(t) ? t : /Could not/.test(t) ? t : undefined;
    });
    const m = /your user id is (\d+)/.exec(text);
    if (!m) throw new Error(`register: ${text}`);
    return { id: Number(m[1]) };
  },

  // login logs in with the keyboard only: type the id, Tab, the
  // password, Enter. With fails, it waits for the error instead.
  async login({ user: name, id, password, fails }) {
    const { page } = user(name);
    await page.getByLabel("User id", { exact: true }).fill("");
    await page.getByLabel("User id", { exact: true }).focus();
    await page.keyboard.type(String(id));
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement.id);
    if (focused !== "login-password") throw new Error(`Tab from the user id went to #${focused}, not the password`);
    await page.keyboard.type(password);
    await page.keyboard.press("Enter");
    if (fails) {
      await page.locator("#notice-box.error").waitFor();
      return { notice: await page.locator("#notice").textContent() };
    }
    await page.locator("#chat").waitFor({ state: "visible" });
    return { me: await page.locator("#me-name").textContent(), notice: await page.locator("#notice").textContent() };
  },

  async logout({ user: name }) {
    const { page } = user(name);
    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.locator("#welcome").waitFor({ state: "visible" });
    return {};
  },

  async addFriend({ user: name, id, fails }) {
    const { page } = user(name);
    await page.getByLabel("Add a friend (user id)").fill(String(id));
    await page.getByLabel("Add a friend (user id)").press("Enter");
    if (!fails) await page.locator(`button.peer[data-conv="u${id}"]`).waitFor();
    const notice = await poll("the add friend notice", async () => {
      const t = await page.locator("#notice").textContent();
      return /is now your friend|Failed/.test(t) ? t : undefined;
    });
    return { notice };
  },

  // friend waits until the friend list shows id (in state, if given) and
  // returns what its button says.
  async friend({ user: name, id, state }) {
    const { page } = user(name);
    const b = page.locator(`button.peer[data-conv="u${id}"]`);
    await poll(`friend ${id} ${state || ""} in ${name}'s list`, async () =>
      (await b.count()) === 1 && (!state || (await b.getAttribute("data-state")) === state));
    return { text: await b.textContent(), state: await b.getAttribute("data-state") };
  },

  async createGroup({ user: name, name: gname, desc }) {
    const { page } = user(name);
    await page.getByLabel("New group: name").fill(gname);
    await page.getByLabel("Description (optional)").fill(desc || "");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    const notice = await poll("the new group id", async () => {
      const t = await page.locator("#notice").textContent();
      return /its id is \d+|Failed/.test(t) ? t : undefined;
    });
    const m = /its id is (\d+)/.exec(notice);
    if (!m) throw new Error(`create group: ${notice}`);
    await page.locator(`button.peer[data-conv="g${m[1]}"]`).waitFor();
    return { id: Number(m[1]), notice };
  },

  async joinGroup({ user: name, id }) {
    const { page } = user(name);
    await page.getByLabel("Join a group (group id)").fill(String(id));
    await page.getByRole("button", { name: "Join", exact: true }).click();
    await page.locator(`button.peer[data-conv="g${id}"]`).waitFor();
    return { info: await page.locator("#conv-info").textContent() };
  },

  async leaveGroup({ user: name, id }) {
    const { page } = user(name);
    await select(page, `g${id}`);
    await page.getByRole("button", { name: "Leave group", exact: true }).click();
    await page.locator(`button.peer[data-conv="g${id}"]`).waitFor({ state: "detached" });
    return { notice: await page.locator("#notice").textContent() };
  },

  // send selects conv ("u2", "g1"), types text in the message box and
  // presses Enter; with wait, it waits until the page marks it sent.
  async send({ user: name, conv, text, wait }) {
    const { page } = user(name);
    await select(page, conv);
    const box = page.locator("#composer-input");
    await box.fill(text);
    await box.press("Enter");
    if (wait) {
      await poll(`"${text}" sent`, async () => {
        const ms = (await messages(page, conv)).filter((m) => m.mine && m.text === text);
        return ms.length > 0 && ms.every((m) => m.status === "sent");
      });
    }
    return { status: (await messages(page, conv)).filter((m) => m.mine && m.text === text).map((m) => m.status) };
  },

  async select({ user: name, conv }) {
    await select(user(name).page, conv);
    return {};
  },

  // messages waits until conv shows at least count messages (and, with
  // allSent, the user's own are all marked sent) and returns them all.
  async messages({ user: name, conv, count, allSent }) {
    const { page } = user(name);
    return poll(`${count} messages in ${name}'s ${conv}${allSent ? ", all sent" : ""}`, async () => {
      const ms = await messages(page, conv);
      const ok = ms.length >= (count || 0) && (!allSent || ms.every((m) => !m.mine || m.status === "sent"));
      return ok ? ms : undefined;
    });
  },

  // session returns whether the page is logged in and its notice; with
  // loggedIn given, it waits for that first.
  async session({ user: name, loggedIn }) {
    const { page } = user(name);
    const chat = page.locator("#chat");
    if (loggedIn !== undefined) {
      await poll(`${name}'s page ${loggedIn ? "logged in" : "logged out"}`, async () => (await chat.isVisible()) === loggedIn);
    }
    return { loggedIn: await chat.isVisible(), notice: await page.locator("#notice").textContent() };
  },

  async title({ user: name }) {
    return { title: await user(name).page.title() };
  },

  // peer returns what a conversation's button says (name, state, unread).
  async peer({ user: name, conv }) {
    const { page } = user(name);
    const b = page.locator(`button.peer[data-conv="${conv}"]`);
    return { text: await b.textContent(), state: await b.getAttribute("data-state") };
  },

  // conn waits for the connection indicator to be in state (if given) and
  // returns its text and every state it showed so far ("+N ms state: text",
  // N counted from the page's load).
  async conn({ user: name, state, timeout }) {
    const { page } = user(name);
    if (state) await poll(`${name}'s page ${state}`, async () => (await connState(page)) === state, timeout || WAIT);
    return {
      state: await connState(page),
      text: await page.locator("#conn").textContent(),
      history: await page.evaluate(() => window.natterStates),
    };
  },

  async screenshot({ user: name, file }) {
    const { page } = user(name);
    if (!artifacts) return { path: "" };
    const path = join(artifacts, file);
    await page.screenshot({ path });
    return { path };
  },

  // a11y checks what a screen reader and a keyboard need: every input has
  // a label, message logs are live regions, nothing is focusable that is
  // hidden.
  async a11y({ user: name }) {
    const { page } = user(name);
    return page.evaluate(() => {
      const bad = [];
      for (const i of document.querySelectorAll("input")) {
        if (i.labels.length === 0) bad.push(`input #${i.id} has no label`);
      }
      for (const l of document.querySelectorAll("ol.log")) {
        if (l.getAttribute("aria-live") !== "polite" || l.getAttribute("role") !== "log") bad.push(`log ${l.dataset.conv} is not a live region`);
      }
      for (const b of document.querySelectorAll("button")) {
        if (!b.textContent.trim()) bad.push(`button #${b.id} has no text`);
      }
      if (document.getElementById("announce").getAttribute("aria-live") !== "polite") bad.push("nothing announces the connection state");
      if (document.getElementById("notice").getAttribute("role") !== "status") bad.push("results are not announced");
      return bad;
    });
  },

  // problems returns the console errors, warnings and page errors seen
  // (a Content-Security-Policy violation is one).
  async problems({ user: name }) {
    return user(name).problems;
  },

  async close({ user: name }) {
    const u = users.get(name);
    if (u) await u.ctx.close();
    users.delete(name);
    return {};
  },
};

// failShots saves a screenshot of every page, for a failed op.
async function failShots(id) {
  if (!artifacts) return;
  for (const [name, u] of users) {
    try {
      await u.page.screenshot({ path: join(artifacts, `failed-${id}-${name}.png`) });
    } catch (e) {
      log("screenshot", name, e.message);
    }
  }
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: 0, ok: false, error: `bad request: ${e.message}` }) + "\n");
    continue;
  }
  const t0 = Date.now();
  try {
    const op = ops[req.op];
    if (!op) throw new Error(`unknown op ${req.op}`);
    const result = await op(req.args || {});
    log(`#${req.id} ${req.op} ${JSON.stringify(req.args)} -> ok (${Date.now() - t0} ms)`);
    process.stdout.write(JSON.stringify({ id: req.id, ok: true, result }) + "\n");
  } catch (e) {
    log(`#${req.id} ${req.op} ${JSON.stringify(req.args)} -> ${e.stack}`);
    await failShots(req.id);
    process.stdout.write(JSON.stringify({ id: req.id, ok: false, error: e.message }) + "\n");
  }
}
await browser.close();
rmSync(scratch, { recursive: true, force: true });
