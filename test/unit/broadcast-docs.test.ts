/**
 * Keeps docs/broadcast.md honest: every request example is a valid request (the API's own schema),
 * every WebSocket example a well-formed broadcast message, every error code the catalogue has
 * for broadcasts is listed with its status, the built-in templates are quoted exactly and every
 * configuration key is documented.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { BroadcastConfig } from '../../config/schema.js';
import { BUILT_IN_TEMPLATES } from '../../gateway/src/broadcast/templates.js';
import { ERRORS } from '../../gateway/src/errors.js';
import { BroadcastRequest, DELIVERY_STATES, type BroadcastServerMessage } from '../../protocol/broadcasts.js';

const REPO = resolve(import.meta.dirname, '../..');
const doc = readFileSync(join(REPO, 'docs/broadcast.md'), 'utf8');

function blocks(lang: string, attr: string): Array<{ line: number; body: string }> {
  const out: Array<{ line: number; body: string }> = [];
  const lines = doc.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== `\`\`\`${lang} ${attr}`) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!);
    out.push({ line: start + 1, body: body.join('\n') });
  }
  return out;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validRequest = ajv.compile(BroadcastRequest);
const MESSAGE_TYPES: ReadonlyArray<BroadcastServerMessage['type']> = ['broadcasts.snapshot', 'broadcast.created', 'broadcast.updated', 'broadcast.progress', 'broadcast.finished'];

describe('docs/broadcast.md', () => {
  it('has request examples that the API accepts, the curl one included', () => {
    const requests = blocks('json', 'request').map((b) => ({ line: b.line, value: JSON.parse(b.body) as unknown }));
    const curl = /-d '(\{"target".*?\})'/.exec(doc);
    expect(curl).not.toBeNull();
    requests.push({ line: 0, value: JSON.parse(curl![1]!) as unknown });
    expect(requests.length).toBeGreaterThanOrEqual(4);
    for (const r of requests) expect(validRequest(r.value), `line ${r.line}: ${ajv.errorsText(validRequest.errors)}`).toBe(true);
  });

  it('has well-formed WebSocket examples of the progress and end messages', () => {
    const seen = new Set<string>();
    for (const b of blocks('json', 'ws')) {
      const m = JSON.parse(b.body) as { type: string; counts?: Record<string, number>; total?: number; changes?: unknown[][]; broadcast?: { counts: Record<string, number> } };
      expect(MESSAGE_TYPES as readonly string[], `line ${b.line}`).toContain(m.type);
      seen.add(m.type);
      const counts = m.counts ?? m.broadcast?.counts;
      expect(Object.keys(counts ?? {}).sort(), `line ${b.line}`).toEqual([...DELIVERY_STATES].sort());
      if (m.type === 'broadcast.progress') {
        expect(Object.values(m.counts!).reduce((a, c) => a + c, 0)).toBe(m.total);
        for (const c of m.changes!) {
          expect(c.length === 2 || c.length === 3).toBe(true);
          expect(DELIVERY_STATES as readonly unknown[]).toContain(c[1]);
        }
      }
    }
    expect([...seen].sort()).toEqual(['broadcast.created', 'broadcast.finished', 'broadcast.progress']);
  });

  it('has HTTP bodies that parse, errors with a catalogue code', () => {
    for (const b of blocks('json', 'http')) {
      const body = JSON.parse(b.body) as Record<string, unknown>;
      if ('code' in body) expect(Object.keys(ERRORS)).toContain(body.code);
    }
  });

  it('lists every broadcast error code with its status', () => {
    const codes = Object.entries(ERRORS).filter(([code]) => code.startsWith('BROADCAST_'));
    expect(codes.length).toBeGreaterThanOrEqual(7);
    for (const [code, { status }] of codes) expect(doc).toMatch(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
  });

  it('quotes the built-in templates exactly, and documents every configuration key', () => {
    for (const t of BUILT_IN_TEMPLATES) expect(doc).toContain(`| \`${t.id}\` ${t.title} | ${t.priority} | ${t.text} |`);
    const keys = Object.keys((BroadcastConfig as unknown as { properties: Record<string, unknown> }).properties);
    for (const key of keys) expect(doc, key).toContain(`\`${key}`);
  });
});
