// Evaluated in an isolated world of a tab by POST /webmcp/custom-tools: the definitions' metadata, or an
// exception saying what is wrong with them. The marker below is replaced by the expression.
(() => {
const defs = (
__SOURCE__
);
if (!Array.isArray(defs) || defs.length === 0) throw new TypeError("source must evaluate to a non-empty array of tool definitions");
const plain = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
return defs.map((d, i) => {
  if (!d || typeof d !== "object") throw new TypeError(`definition ${i} is not an object`);
  const t = d.tool || {};
  if (typeof t.name !== "string" || !t.name) throw new TypeError(`definition ${i}: tool.name must be a non-empty string`);
  if (typeof d.execute !== "function") throw new TypeError(`definition ${i} (${t.name}): execute must be a function`);
  const kind = d.kind === undefined ? "page" : d.kind;
  if (kind !== "page") throw new TypeError(`definition ${i} (${t.name}): kind ${JSON.stringify(kind)} is not supported (only "page")`);
  const patterns = d.match && d.match.url_patterns;
  if (!Array.isArray(patterns) || patterns.length === 0 || patterns.some((p) => typeof p !== "string")) throw new TypeError(`definition ${i} (${t.name}): match.url_patterns must be a non-empty array of strings`);
  for (const p of patterns) new URLPattern(p);
  const tool = { name: t.name, description: String(t.description ?? ""), inputSchema: plain(t.inputSchema) ?? { type: "object", properties: {} } };
  if (t.outputSchema) tool.outputSchema = plain(t.outputSchema);
  if (t.title) tool.title = String(t.title);
  if (t.annotations) tool.annotations = plain(t.annotations);
  return { kind, url_patterns: patterns, tool };
});
})()
