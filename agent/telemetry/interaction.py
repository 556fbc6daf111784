"""The script injected into every document for interaction_* events: it reports through a CDP binding
(Runtime.addBinding), never by polling, rate-limited, and never reports keys typed into password or other
sensitive fields. It takes the binding function into its closure and deletes it from `window`, so page
scripts that run later cannot call it."""

from __future__ import annotations

BINDING = "__bvaTelemetry"

SCRIPT = (
    r"""
(() => {
  const NAME = "__BINDING__";
  const send = window[NAME];
  if (typeof send !== "function" || window.__bvaTelemetryInstalled) return;
  try { delete window[NAME]; } catch (e) {}
  Object.defineProperty(window, "__bvaTelemetryInstalled", { value: true });
  // At most 20 events a second per document; the rest are dropped.
  let tokens = 20, last = Date.now();
  const emit = (kind, data) => {
    const now = Date.now();
    tokens = Math.min(20, tokens + (now - last) / 50);
    last = now;
    if (tokens < 1) return;
    tokens -= 1;
    try { send(JSON.stringify(Object.assign({ kind }, data))); } catch (e) {}
  };
  const selector = (el) => {
    if (!el || el.nodeType !== 1) return "";
    const parts = [];
    for (let node = el; node && node.nodeType === 1 && parts.length < 5; node = node.parentElement) {
      if (node.id) { parts.unshift("#" + CSS.escape(node.id)); break; }
      let part = node.tagName.toLowerCase();
      const parent = node.parentElement;
      if (parent) {
        const same = Array.from(parent.children).filter((c) => c.tagName === node.tagName);
        if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(node) + 1) + ")";
      }
      parts.unshift(part);
    }
    return parts.join(" > ");
  };
  const SENSITIVE = /pass|secret|token|otp|one-time|card|cc-|cvc|cvv|ssn|pin/i;
  const sensitive = (el) => {
    if (!el || el.nodeType !== 1) return false;
    if (el.isContentEditable) return false;
    const type = (el.getAttribute("type") || "").toLowerCase();
    if (type === "password") return true;
    const hints = [el.getAttribute("autocomplete"), el.getAttribute("name"), el.id,
                   el.getAttribute("aria-label")];
    return hints.some((h) => h && SENSITIVE.test(h));
  };
  addEventListener("click", (e) => {
    const el = e.target && e.target.nodeType === 1 ? e.target : null;
    const text = el && !sensitive(el) ? (el.innerText || el.value || "").trim().slice(0, 200) : "";
    emit("click", { x: Math.round(e.clientX), y: Math.round(e.clientY), selector: selector(el),
                    tag: el ? el.tagName.toUpperCase() : "", text });
  }, true);
  addEventListener("keydown", (e) => {
    const el = document.activeElement;
    if (sensitive(el) || sensitive(e.target)) return;  // not even that a key was pressed
    emit("key", { key: e.key, selector: selector(el), tag: el ? el.tagName.toUpperCase() : "" });
  }, true);
  // Where each element rested after its last gesture: a scroll event fires after the position moved.
  const rest = new WeakMap();
  const root = () => document.scrollingElement || document.documentElement;
  // The document's start position (the script may run before there is a documentElement).
  const init = () => {
    const r = root();
    if (r && !rest.has(r)) rest.set(r, { x: Math.round(scrollX), y: Math.round(scrollY) });
  };
  init();
  addEventListener("DOMContentLoaded", init, true);
  const scrolls = new Map();
  addEventListener("scroll", (e) => {
    const el = e.target === document ? root() : e.target;
    if (!el || el.nodeType !== 1) return;
    let state = scrolls.get(el);
    if (!state) {
      const from = rest.get(el) || { x: Math.round(el.scrollLeft), y: Math.round(el.scrollTop) };
      state = { fromX: from.x, fromY: from.y, timer: 0 };
      scrolls.set(el, state);
    }
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      scrolls.delete(el);
      const to = { x: Math.round(el.scrollLeft), y: Math.round(el.scrollTop) };
      rest.set(el, to);
      emit("scroll_settled", { from_x: state.fromX, from_y: state.fromY, to_x: to.x, to_y: to.y,
                               target_selector: selector(el) });
    }, 150);
  }, true);
})();
"""
).replace("__BINDING__", BINDING)
