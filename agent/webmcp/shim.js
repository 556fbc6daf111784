// Injected by the agent into every document of every tab (Page.addScriptToEvaluateOnNewDocument, before the
// page's own scripts): navigator.modelContext (WebMCP's registerTool / unregisterTool / provideContext /
// clearContext) where Chromium has none, and window.__agentWebmcp, through which the agent lists and invokes
// the registrations. `doc` names this document: a tool_ref carries it, so a ref dies with its document.
(() => {
  if (Object.prototype.hasOwnProperty.call(window, "__agentWebmcp")) return;
  const tools = new Map(); // name → {def, reg}
  let seq = 0;
  const doc = Math.random().toString(36).slice(2) + Date.now().toString(36);
  const plain = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
  function register(def, options) {
    if (!def || typeof def.name !== "string" || !def.name) throw new TypeError("registerTool: a name is required");
    if (typeof def.execute !== "function") throw new TypeError("registerTool: execute must be a function");
    if (tools.has(def.name)) throw new DOMException(`a tool named ${def.name} is registered already`, "InvalidStateError");
    const entry = { def, reg: ++seq };
    tools.set(def.name, entry);
    const signal = options && options.signal;
    if (signal) signal.addEventListener("abort", () => tools.get(def.name) === entry && tools.delete(def.name));
  }
  if (!("modelContext" in navigator)) {
    const modelContext = Object.freeze({
      registerTool: (def, options) => void register(def, options),
      unregisterTool: (name) => void tools.delete(String(name)),
      provideContext: (context) => {
        tools.clear();
        for (const def of (context && context.tools) || []) register(def);
      },
      clearContext: () => tools.clear(),
    });
    Object.defineProperty(Navigator.prototype, "modelContext", { get: () => modelContext, configurable: true, enumerable: true });
  }
  const describe = (error) => (error && error.message ? `${error.name}: ${error.message}` : String(error));
  Object.defineProperty(window, "__agentWebmcp", {
    value: Object.freeze({
      doc,
      list: () =>
        [...tools.values()].map(({ def, reg }) => ({
          reg,
          tool: {
            name: def.name,
            description: String(def.description ?? ""),
            inputSchema: plain(def.inputSchema) ?? { type: "object", properties: {} },
            ...(def.outputSchema ? { outputSchema: plain(def.outputSchema) } : {}),
            ...(def.title ? { title: String(def.title) } : {}),
            ...(def.annotations ? { annotations: plain(def.annotations) } : {}),
          },
        })),
      invoke: async (d, reg, name, input) => {
        const entry = tools.get(name);
        if (d !== doc || !entry || entry.reg !== reg) return { state: "gone" };
        try {
          const client = { requestUserInteraction: async (callback) => callback() };
          return { state: "done", output: plain(await entry.def.execute(input, client)) ?? null };
        } catch (error) {
          return { state: "error", error: describe(error) };
        }
      },
      // A custom tool's definitions (re-evaluated from its source here) and the one named `name` run.
      invokeCustom: async (d, defs, name, input) => {
        if (d !== doc) return { state: "gone" };
        const def = Array.isArray(defs) ? defs.find((t) => t && t.tool && t.tool.name === name) : undefined;
        if (!def) return { state: "error", error: `the source no longer defines ${name}` };
        try {
          return { state: "done", output: plain(await def.execute(input)) ?? null };
        } catch (error) {
          return { state: "error", error: describe(error) };
        }
      },
      matches: (patterns) =>
        patterns.some((pattern) => {
          try {
            return new URLPattern(pattern).test(location.href);
          } catch {
            return false;
          }
        }),
    }),
  });
})();
