// A warm Playwright worker for POST /playwright/execute (one per executor; the agent starts and kills it).
//
// Runs with the Node binary inside the python `playwright` wheel and imports the playwright-core shipped next to
// it (AGENT_PLAYWRIGHT_CORE): no npm, no browser download. It connects to Chromium over CDP (AGENT_CDP_ENDPOINT)
// when it starts and stays connected between calls; after a Chromium restart it reconnects on the next call.
// An execute worker that has had no call for AGENT_PLAYWRIGHT_IDLE_DETACH_MS (0 = never) disconnects, and
// connects again on its next call: while connected, Playwright keeps Network, Runtime and Page enabled on every
// tab, and Chromium then reports every request and console line of every tab to it (measured: ~3 ms more per
// request of a tab, and a quarter of a core for a page logging 3,000 lines/s). The agent starts the REPL worker
// with 0: its bindings may hold this connection's objects.
//
// Protocol: one JSON request per line on stdin, one JSON answer per line on the file descriptor AGENT_REPLY_FD
// (stdout and stderr stay free for whatever the code or Node prints).
//   request  {id, code, target_id, timeout_ms}
//   answer   {id, success, result?, error?, stdout, stderr}
//   first    {ready: true, node, playwright}
//   repl     {id, kind: "repl", code, target_id, timeout_ms}
//            → {id, success, error?, stack?, content: [{type: "text", channel, text} | {type: "image", ...}],
//               content_truncated}
// Code runs in a fresh async function scope with `page`, `context`, `browser` and a `console` whose output is
// captured per call. TypeScript is accepted: when the code does not parse as JavaScript, Node's own type
// stripper (module.stripTypeScriptTypes, strip-only) removes the annotations first. The agent enforces the
// timeout by killing this process, which is the only way to stop code that never yields.

import { readFileSync, writeSync } from "node:fs";
import { Console } from "node:console";
import module from "node:module";
import readline from "node:readline";
import util from "node:util";
import vm from "node:vm";

const { chromium } = await import(process.env.AGENT_PLAYWRIGHT_CORE);
const endpoint = process.env.AGENT_CDP_ENDPOINT;
const replyFd = Number(process.env.AGENT_REPLY_FD);
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const PREFIX = "async function __agent_execute(page, context, browser, console) {\n";

let browser = null;
let connecting = null;
const idleDetachMs = Number(process.env.AGENT_PLAYWRIGHT_IDLE_DETACH_MS || 0);
let idleTimer = null;

function stopIdleTimer() {
  if (idleTimer !== null) clearTimeout(idleTimer);
  idleTimer = null;
}

function startIdleTimer() {
  stopIdleTimer();
  if (!(idleDetachMs > 0)) return;
  idleTimer = setTimeout(() => {
    idleTimer = null;
    const connected = browser;
    if (!connected || connecting) return;
    // The next call connects anew (ensureBrowser). For a browser connected over CDP, close() only ends
    // this connection: Chromium and its tabs stay as they are.
    browser = null;
    connected.close().catch(() => {});
  }, idleDetachMs);
}
const targetIds = new WeakMap(); // Page → CDP target id

function reply(message) {
  let line = JSON.stringify(message) + "\n";
  let buffer = Buffer.from(line, "utf8");
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += writeSync(replyFd, buffer, offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

async function connect(deadline) {
  // Chromium may be restarting: keep trying until the call's deadline.
  for (;;) {
    try {
      // noDefaults: leave the user's browser as it is (download behaviour, focus emulation of the tabs).
      const connected = await chromium.connectOverCDP(endpoint, {
        timeout: Math.max(1000, deadline - Date.now()),
        noDefaults: true,
        isLocal: true,
      });
      connected.on("disconnected", () => {
        if (browser === connected) browser = null;
      });
      return connected;
    } catch (error) {
      if (Date.now() + 200 >= deadline) throw new Error(`cannot connect to Chromium at ${endpoint}: ${error.message}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function ensureBrowser(deadline) {
  if (browser && browser.isConnected()) return browser;
  if (!connecting) {
    connecting = connect(deadline).then(
      (connected) => {
        browser = connected;
        connecting = null;
        return connected;
      },
      (error) => {
        connecting = null;
        throw error;
      },
    );
  }
  return connecting;
}

async function targetIdOf(page) {
  let id = targetIds.get(page);
  if (id === undefined) {
    const session = await page.context().newCDPSession(page);
    try {
      id = (await session.send("Target.getTargetInfo")).targetInfo.targetId;
    } finally {
      await session.detach().catch(() => {});
    }
    targetIds.set(page, id);
  }
  return id;
}

async function findPage(connected, targetId, deadline) {
  // A tab opened a moment ago may not be known to Playwright yet: look again until it shows up.
  const until = Math.min(deadline, Date.now() + 5000);
  for (;;) {
    for (const context of connected.contexts()) {
      for (const page of context.pages()) {
        if (page.isClosed()) continue;
        try {
          if ((await targetIdOf(page)) === targetId) return page;
        } catch {
          // closed meanwhile
        }
      }
    }
    if (Date.now() >= until) return null;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function compile(code) {
  try {
    return new AsyncFunction("page", "context", "browser", "console", code);
  } catch (jsError) {
    if (!(jsError instanceof SyntaxError)) throw jsError;
    let stripped;
    try {
      // Strip-only mode keeps every position, so the body is where it was inside the wrapper.
      stripped = module.stripTypeScriptTypes(PREFIX + code + "\n}");
    } catch (tsError) {
      // Not JavaScript, not TypeScript either: say what both parsers said.
      const message = `${jsError.message} (as TypeScript: ${tsError.message})`;
      const error = new SyntaxError(message);
      error.stack = `SyntaxError: ${message}`;
      throw error;
    }
    return new AsyncFunction("page", "context", "browser", "console", stripped.slice(PREFIX.length, PREFIX.length + code.length));
  }
}

function describe(error) {
  if (error instanceof Error) {
    // The caller's frames only: not this worker's, not Node's internals.
    // The caller's frames are named <code>:line:column, lines counted in the code as sent.
    const stack = String(error.stack || "")
      .split("\n")
      .filter((line) => line.includes("<anonymous>") || !/^\s+at .*(worker\.mjs|node:internal)/.test(line))
      .map((line) =>
        line.replace(/\(?eval at compile \([^)]*\), <anonymous>:(\d+):(\d+)\)?/, (_, row, column) => `<code>:${Number(row) - 2}:${column}`),
      )
      .join("\n");
    return { message: `${error.name}: ${error.message}`, stack };
  }
  return { message: `Thrown: ${typeof error === "string" ? error : JSON.stringify(error)}`, stack: "" };
}

async function run(request) {
  const stdout = [];
  const stderr = [];
  const sink = (into) => ({ write: (chunk) => (into.push(String(chunk)), true) });
  // ignoreErrors: false makes Console call write() and nothing else on these sinks.
  const captured = new Console({ stdout: sink(stdout), stderr: sink(stderr), colorMode: false, ignoreErrors: false });
  const answer = { id: request.id, success: false };
  const deadline = Date.now() + (request.timeout_ms || 60000);
  try {
    const fn = compile(request.code);
    const connected = await ensureBrowser(deadline);
    let page = null;
    if (request.target_id) {
      page = await findPage(connected, request.target_id, deadline);
      if (!page) throw new Error(`the tab ${request.target_id} is gone`);
    }
    const context = page ? page.context() : connected.contexts()[0];
    const value = await fn(page, context, connected, captured);
    answer.success = true;
    if (value !== undefined) {
      try {
        answer.result = JSON.parse(JSON.stringify(value) ?? "null");
      } catch (error) {
        answer.success = false;
        answer.error = `the returned value is not JSON-serializable: ${error.message}`;
      }
    }
  } catch (error) {
    const { message, stack } = describe(error);
    answer.error = message;
    if (stack) stderr.push(stack + "\n");
  }
  answer.stdout = stdout.join("");
  answer.stderr = stderr.join("");
  return answer;
}

// --- the persistent REPL (POST /repl): a worker of its own, started with --expose-internals -----------------
//
// Code runs as a script in this process's main context, so top-level let/const/class/function bindings stay
// in its global lexical scope for later calls (as in Node's own REPL). Code with top-level await is rewritten
// by the same function Node's REPL uses (internal/repl/await: declarations hoisted to the script's top level,
// the rest in an async IIFE), which keeps those bindings persistent too.

const TEXT_LIMIT = 1024 * 1024; // characters of text output per call
const IMAGE_LIMIT = 8 * 1024 * 1024; // bytes of image output per call (before base64)
const processTopLevelAwait = process.execArgv.includes("--expose-internals")
  ? module.createRequire(import.meta.url)("internal/repl/await").processTopLevelAwait
  : null;
let sink = null; // the running call's output; output after a call ended (a timer) is dropped
let replPage = null;
const pageSessions = new WeakMap(); // Page → CDPSession
let browserSession = null; // [Browser, CDPSession]

function emitText(channel, text) {
  const out = sink;
  if (!out) return;
  let chunk = String(text);
  if (out.text + chunk.length > TEXT_LIMIT) {
    chunk = chunk.slice(0, Math.max(0, TEXT_LIMIT - out.text));
    out.truncated = true;
  }
  if (!chunk) return;
  out.text += chunk.length;
  const last = out.parts[out.parts.length - 1];
  if (last && last.type === "text" && last.channel === channel) last.text += chunk;
  else out.parts.push({ type: "text", channel, text: chunk });
}

function emitImage(data, mimeType = "image/png") {
  let bytes;
  if (typeof data === "string") {
    const url = /^data:([^;,]+);base64,(.*)$/s.exec(data);
    if (url) [mimeType, data] = [url[1], url[2]];
    bytes = Buffer.from(data, "base64");
  } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    bytes = Buffer.from(data instanceof ArrayBuffer ? data : data.buffer, data.byteOffset || 0, data.byteLength);
  } else {
    throw new TypeError("repl.emitImage(data, mimeType): data must be a Buffer, a Uint8Array or base64 text");
  }
  if (typeof mimeType !== "string" || !mimeType.startsWith("image/")) {
    throw new TypeError(`repl.emitImage: mimeType must be an image/* type, got ${mimeType}`);
  }
  const out = sink;
  if (!out) return;
  if (out.image + bytes.length > IMAGE_LIMIT) {
    out.truncated = true;
    return;
  }
  out.image += bytes.length;
  out.parts.push({ type: "image", mime_type: mimeType, data_b64: bytes.toString("base64") });
}

const show = (value) => (typeof value === "string" ? value : util.inspect(value, { depth: 4 }));

const HELP = {
  write: "repl.write(...values): text output (channel 'write'); strings as they are, others inspected, joined by spaces, no newline added.",
  emitImage: "repl.emitImage(data, mimeType = 'image/png'): image output; data is a Buffer/Uint8Array, base64 text or a data: URL. Example: repl.emitImage(await page.screenshot())",
  cdp: "await repl.cdp(method, params = {}): a raw CDP command on a browser-level session. Example: await repl.cdp('Target.getTargets')",
  pageCdp: "await repl.pageCdp(method, params = {}, target = page): a raw CDP command on a session attached to a page. Example: await repl.pageCdp('Runtime.evaluate', {expression: '1+1'})",
  cdpEndpoint: "repl.cdpEndpoint: Chromium's DevTools HTTP endpoint, for a CDP client of your own.",
  help: "repl.help(name?): this list, or the help of one helper.",
  page: "page: the tab the user sees, bound again at the start of every call (keep a page of your own in another binding).",
  context: "context: page's BrowserContext (Playwright).",
  browser: "browser: the Playwright Browser connected over CDP.",
  console: "console.log/info/debug → channel 'stdout'; console.error/warn → channel 'stderr'.",
};

const repl = Object.freeze({
  write: (...values) => emitText("write", values.map(show).join(" ")),
  emitImage,
  help(name) {
    if (name === undefined) {
      emitText("write", "Helpers (repl.help(name) for one):\n" + Object.keys(HELP).map((k) => `  ${k}`).join("\n") + "\n");
    } else if (Object.hasOwn(HELP, name)) {
      emitText("write", HELP[name] + "\n");
    } else {
      emitText("write", `no helper named ${JSON.stringify(name)}; repl.help() lists them\n`);
    }
  },
  async cdp(method, params = {}) {
    const connected = await ensureBrowser(Date.now() + 30000);
    if (!browserSession || browserSession[0] !== connected) {
      browserSession = [connected, await connected.newBrowserCDPSession()];
    }
    return browserSession[1].send(method, params);
  },
  async pageCdp(method, params = {}, target = replPage) {
    if (!target) throw new Error("there is no page to send to");
    let session = pageSessions.get(target);
    if (!session) {
      session = await target.context().newCDPSession(target);
      pageSessions.set(target, session);
    }
    return session.send(method, params);
  },
  cdpEndpoint: endpoint,
});

const replConsole = new Console({
  stdout: { write: (chunk) => (emitText("stdout", chunk), true) },
  stderr: { write: (chunk) => (emitText("stderr", chunk), true) },
  colorMode: false,
  ignoreErrors: false,
});

function describeRepl(error) {
  if (error instanceof Error) {
    const stack = String(error.stack || "")
      .split("\n")
      .filter((line) => !/^\s+at .*(worker\.mjs|node:internal|node:vm)/.test(line))
      .join("\n");
    return { message: `${error.name}: ${error.message}`, stack };
  }
  return { message: `Thrown: ${typeof error === "string" ? error : util.inspect(error)}`, stack: "" };
}

async function runRepl(request) {
  const out = (sink = { parts: [], text: 0, image: 0, truncated: false });
  const answer = { id: request.id, success: false };
  const deadline = Date.now() + (request.timeout_ms || 60000);
  try {
    if (request.code.trim()) {
      const connected = await ensureBrowser(deadline);
      replPage = request.target_id ? await findPage(connected, request.target_id, deadline) : null;
      Object.assign(globalThis, {
        page: replPage,
        context: replPage ? replPage.context() : connected.contexts()[0],
        browser: connected,
        repl,
        console: replConsole,
      });
      let rewritten = null;
      try {
        rewritten = processTopLevelAwait ? processTopLevelAwait(request.code) : null;
      } catch {
        // not parseable: compiling it as it is reports the syntax error
      }
      const script = new vm.Script(rewritten ?? request.code, {
        filename: "<repl>",
        importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
      });
      const value = script.runInThisContext({ displayErrors: false });
      if (rewritten !== null) await value; // the IIFE: its rejection is the code's error; values are ignored
    }
    answer.success = true;
  } catch (error) {
    const { message, stack } = describeRepl(error);
    answer.error = message;
    if (stack) answer.stack = stack;
  } finally {
    sink = null;
  }
  answer.content = out.parts;
  answer.content_truncated = out.truncated;
  return answer;
}

// Warm up: be connected before the first call (and disconnect if none comes within the idle time).
ensureBrowser(Date.now() + 30000).then(startIdleTimer, () => {});

const pw = JSON.parse(readFileSync(new URL("package.json", "file://" + process.env.AGENT_PLAYWRIGHT_CORE), "utf8"));
reply({ ready: true, node: process.version, playwright: pw.version });

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
let queue = Promise.resolve();
lines.on("line", (line) => {
  if (!line.trim()) return;
  // One call at a time (the agent serializes per executor anyway).
  queue = queue.then(async () => {
    stopIdleTimer();
    let request;
    try {
      request = JSON.parse(line);
    } catch (error) {
      reply({ id: null, success: false, error: `bad request line: ${error.message}`, stdout: "", stderr: "" });
      return;
    }
    reply(await (request.kind === "repl" ? runRepl(request) : run(request)));
    startIdleTimer();
  });
});
lines.on("close", () => process.exit(0));
// Errors that escape the executed code later (a rejected promise nobody awaited, a throw in a timer) must not
// kill the worker.
process.on("unhandledRejection", (error) => {
  process.stderr.write(`unhandled rejection in executed code: ${error && error.stack ? error.stack : error}\n`);
});
process.on("uncaughtException", (error) => {
  process.stderr.write(`uncaught exception in executed code: ${error && error.stack ? error.stack : error}\n`);
});
