// The chat widget's Markdown libraries, vendored beside this file by scripts/sync_browser.py from
// the versions tests/node/package.json pins: markdown-it (MIT) and DOMPurify (Apache-2.0 or
// MPL-2.0). The chat template loads this module before modelriver.js, which finds them on
// globalThis.ModelRiverMarkdown.
import MarkdownIt from "./vendor/markdown-it.min.mjs";
import DOMPurify from "./vendor/purify.es.mjs";

globalThis.ModelRiverMarkdown = Object.freeze({ MarkdownIt, DOMPurify });
