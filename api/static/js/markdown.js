// Markdown rendering of untrusted agent output.
//
// Three layers, so that no single bug lets an agent run script in the page:
//   1. marked's `html` renderer is replaced: raw HTML written by an agent is shown as text,
//      not interpreted (an agent writing `<img onerror=...>` gets exactly that on screen);
//   2. DOMPurify sanitizes whatever HTML marked produced (e.g. `javascript:` links);
//   3. the page's Content-Security-Policy forbids inline script and foreign origins.

const { marked, DOMPurify } = globalThis;

export function escapeHtml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

const parser = new marked.Marked({ gfm: true, breaks: false, async: false });
parser.use({
  renderer: {
    html(token) {
      return escapeHtml(token.text);
    },
  },
});

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  // Links open elsewhere and do not hand this page to the target.
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const SANITIZE = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"],
};

/** Markdown text to sanitized HTML, safe to assign to innerHTML. */
export function renderMarkdown(text) {
  const html = parser.parse(text ?? "");
  return purify.sanitize(html, SANITIZE);
}

/** Render `text` as Markdown into `element`, replacing what it held. */
export function renderInto(element, text) {
  element.innerHTML = renderMarkdown(text);
}
