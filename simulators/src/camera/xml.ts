/**
 * The little XML the camera simulator needs: requests are parsed with xml2js (already installed as
 * the `onvif` client's dependency; sax-based, never resolves external entities) into a small
 * namespace-stripped element tree; responses are built as strings, every value escaped on the way
 * in. Also ISO 8601 durations and xs:dateTime, which ONVIF uses for every timeout and clock.
 */
import { createRequire } from 'node:module';

interface Xml2jsRaw {
  '#name'?: string;
  $?: Record<string, string>;
  _?: string;
  $$?: Xml2jsRaw[];
}
interface Xml2js {
  parseString(xml: string, options: object, cb: (err: Error | null, result: Record<string, Xml2jsRaw> | null) => void): void;
  processors: { stripPrefix: (name: string) => string };
}
// xml2js has no type declarations here; only the two members above are used.
const xml2js = createRequire(import.meta.url)('xml2js') as Xml2js;

export interface XmlElement {
  /** local name, namespace prefix stripped */
  name: string;
  /** attributes by local name (xmlns declarations included, unused) */
  attrs: Record<string, string>;
  /** text content directly inside this element, trimmed */
  text: string;
  children: XmlElement[];
}

const PARSE_OPTIONS = {
  explicitChildren: true,
  preserveChildrenOrder: true,
  charsAsChildren: false,
  explicitCharkey: true,
  explicitRoot: true,
  tagNameProcessors: [xml2js.processors.stripPrefix],
  attrNameProcessors: [xml2js.processors.stripPrefix],
  async: false,
  strict: true,
};

function convert(raw: Xml2jsRaw, name: string): XmlElement {
  return {
    name,
    attrs: raw.$ ?? {},
    text: (raw._ ?? '').trim(),
    children: (raw.$$ ?? []).map((c) => convert(c, c['#name'] ?? '')),
  };
}

/** Parses a document; throws on malformed XML. */
export function parseXml(xml: string): XmlElement {
  let out: XmlElement | undefined;
  let failure: Error | undefined;
  // With async: false xml2js calls back before parseString returns.
  xml2js.parseString(xml, PARSE_OPTIONS, (err, result) => {
    if (err) failure = err;
    else if (result) {
      const [name, raw] = Object.entries(result)[0] ?? [];
      if (name && raw) out = convert(raw, name);
    }
  });
  if (failure) throw failure;
  if (!out) throw new Error('empty XML document');
  return out;
}

export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}
export function children(el: XmlElement | undefined, name: string): XmlElement[] {
  return el ? el.children.filter((c) => c.name === name) : [];
}
/** Follows a path of child names; undefined if any step is missing. */
export function path(el: XmlElement | undefined, ...names: string[]): XmlElement | undefined {
  let at = el;
  for (const n of names) at = child(at, n);
  return at;
}
export function textAt(el: XmlElement | undefined, ...names: string[]): string | undefined {
  return path(el, ...names)?.text;
}
/** A numeric attribute, or undefined when absent or not a finite number. */
export function numAttr(el: XmlElement | undefined, name: string): number | undefined {
  const raw = el?.attrs[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
/** Escapes text or an attribute value; also drops characters XML 1.0 cannot carry. */
export function esc(value: string | number | boolean): string {
  return String(value)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** `<tag>escaped value</tag>` */
export function el(tag: string, value: string | number | boolean): string {
  return `<${tag}>${esc(value)}</${tag}>`;
}

/** xs:dateTime in UTC, whole seconds, ending in Z (what ONVIF clients parse most reliably). */
export function utcSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');
}
/** xs:dateTime in UTC with milliseconds, ending in Z (event UtcTime: keeps quick changes ordered). */
export function utcMillis(ms: number): string {
  return new Date(ms).toISOString();
}

const DURATION_RE =
  /^(-)?P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/**
 * ISO 8601 duration (xs:duration) in milliseconds: `PT1M`, `PT0.5S`, `P1DT2H`, `-PT5S`. Years and
 * months count as 365 and 30 days (ONVIF timeouts never use them). Undefined if not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_RE.exec(text.trim());
  if (!m || text.trim().endsWith('T') || /^-?P$/.test(text.trim())) return undefined;
  const [, neg, y, mo, w, d, h, mi, s] = m;
  const n = (v: string | undefined) => (v === undefined ? 0 : Number(v));
  const ms =
    ((((n(y) * 365 + n(mo) * 30 + n(w) * 7 + n(d)) * 24 + n(h)) * 60 + n(mi)) * 60 + n(s)) * 1000;
  return neg ? -ms : ms;
}

/** xs:duration for a whole number of seconds, e.g. `PT60S`. */
export function formatDurationSeconds(ms: number): string {
  return `PT${Math.max(0, Math.round(ms / 1000))}S`;
}

/**
 * A WS-BaseNotification termination time: either a duration from `nowMs` or an absolute
 * xs:dateTime. Undefined if it is neither.
 */
export function parseTerminationTime(text: string, nowMs: number): number | undefined {
  const t = text.trim();
  if (t.startsWith('P') || t.startsWith('-P')) {
    const d = parseDuration(t);
    return d === undefined ? undefined : nowMs + d;
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(t)) return undefined;
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}
