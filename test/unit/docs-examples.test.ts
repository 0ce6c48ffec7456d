/**
 * Keeps docs/protocol.md honest: every JSON example marked for checking is validated with the
 * gateway's own validator, every `mosquitto_pub` line is run through the gateway's real ingest
 * (topic, ledger, schema, de-duplication), and the doc must name every event type, command,
 * ack status, reject reason and API error code the code defines.
 *
 * Markers in docs/protocol.md:
 *   ```json payload=<kind>                                   must be accepted
 *   ```json payload=<kind> reject=<reason> detail='<text>'   must be rejected for <reason>
 *                                                            (detail, if given, must match too)
 *   kind: telemetry.water_tank | telemetry.camera | telemetry.voice_pole | event | state |
 *         agentState | command | ack
 *   ```json ws     a WebSocket message (parsed; its type must exist)
 *   ```json http   an HTTP response body (parsed)
 * In ```sh blocks, a `mosquitto_pub … -m '…'` (or `-n`) line, and a `--will-topic … --will-payload '…'`
 * line, must be accepted by ingest, unless it ends with `# duplicate` or `# rejected: <reason>`.
 * `'$(date +%s%3N)'` stands for the current time in ms. Each sh block gets a fresh gateway ingest.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { resolveConfig } from '../../config/load.js';
import { ERRORS } from '../../gateway/src/errors.js';
import { Bus } from '../../gateway/src/bus.js';
import { Ingest, type IngestReason, type IngestResult } from '../../gateway/src/ingest/ingest.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import {
  ACK_STATUSES,
  COMMAND_NAMES,
  DEVICE_KINDS,
  EVENT_TYPES,
  MAX_PAYLOAD_BYTES,
  TelemetryValuesByKind,
} from '../../protocol/payloads.js';
import { ID_PATTERN } from '../../protocol/topics.js';
import { validate, type RejectReason, type Validated } from '../../protocol/validate.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { decodeDeviceSnapshot } from '../../dashboard/src/device-snapshot.js';

const REPO = resolve(import.meta.dirname, '../..');
const DOC_PATH = join(REPO, 'docs/protocol.md');
const doc = readFileSync(DOC_PATH, 'utf8');
const storageDoc = readFileSync(join(REPO, 'docs/storage.md'), 'utf8');

// ---- the doc's code blocks ---------------------------------------------------------------------

interface Block {
  /** 1-based line of the opening fence, for messages. */
  line: number;
  lang: string;
  attrs: Record<string, string>;
  body: string;
}

function parseInfo(info: string): { lang: string; attrs: Record<string, string> } {
  const [lang = '', ...rest] = info.trim().split(/\s+/);
  const attrs: Record<string, string> = {};
  const re = /([A-Za-z]+)=(?:"([^"]*)"|'([^']*)'|(\S+))/g;
  for (const m of rest.join(' ').matchAll(re)) attrs[m[1]!] = m[2] ?? m[3] ?? m[4] ?? '';
  const flags = rest.join(' ').replace(re, '').trim();
  for (const f of flags.split(/\s+/).filter(Boolean)) attrs[f] = 'true';
  return { lang, attrs };
}

function codeBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== fence; i++) body.push(lines[i]!);
    blocks.push({ line: start + 1, ...parseInfo(open[2]!), body: body.join('\n') });
  }
  return blocks;
}

const blocks = codeBlocks(doc);

// ---- payload examples --------------------------------------------------------------------------

const PAYLOAD_KINDS = {
  'telemetry.water_tank': (p: string) => validate.telemetry('water_tank', p),
  'telemetry.camera': (p: string) => validate.telemetry('camera', p),
  'telemetry.voice_pole': (p: string) => validate.telemetry('voice_pole', p),
  event: validate.event,
  state: validate.state,
  agentState: validate.agentState,
  command: validate.command,
  ack: validate.ack,
} satisfies Record<string, (payload: string) => Validated<unknown>>;
type PayloadKind = keyof typeof PAYLOAD_KINDS;

const payloadBlocks = blocks.filter((b) => b.lang === 'json' && b.attrs.payload !== undefined);

describe('docs/protocol.md payload examples', () => {
  it('has marked examples', () => {
    expect(payloadBlocks.length).toBeGreaterThan(10);
  });

  it.each(payloadBlocks.map((b) => [`line ${b.line}: ${b.attrs.payload}${b.attrs.reject ? ` (rejected: ${b.attrs.reject})` : ''}`, b] as const))(
    '%s',
    (_name, block) => {
      const kind = block.attrs.payload!;
      expect(Object.keys(PAYLOAD_KINDS), `unknown payload kind "${kind}"`).toContain(kind);
      const result = PAYLOAD_KINDS[kind as PayloadKind](block.body);
      if (block.attrs.reject === undefined) {
        expect(result, `docs/protocol.md line ${block.line} should be accepted`).toMatchObject({ ok: true });
      } else {
        expect(['too_large', 'not_json', 'schema'] satisfies RejectReason[]).toContain(block.attrs.reject);
        expect(result, `docs/protocol.md line ${block.line} should be rejected`).toMatchObject({ ok: false, reason: block.attrs.reject });
        if (block.attrs.detail !== undefined && !result.ok) expect(result.detail).toBe(block.attrs.detail);
      }
    },
  );

  it('shows an accepted example of every payload kind', () => {
    const shown = new Set(payloadBlocks.filter((b) => b.attrs.reject === undefined).map((b) => b.attrs.payload));
    for (const kind of Object.keys(PAYLOAD_KINDS)) expect(shown, kind).toContain(kind);
  });
});

describe('docs/protocol.md WebSocket and HTTP examples', () => {
  const WS_TYPES = [
    'hello',
    'devices.snapshot',
    'devices.update',
    'storage',
    'incidents.snapshot',
    'incident',
    'incident.dispatch',
    'fireDanger',
  ] as const satisfies readonly ServerMessage['type'][];
  const wsBlocks = blocks.filter((b) => b.lang === 'json' && b.attrs.ws);
  const httpBlocks = blocks.filter((b) => b.lang === 'json' && b.attrs.http);

  it('shows every WebSocket message type, each well-formed', () => {
    const seen = new Set<string>();
    for (const b of wsBlocks) {
      const msg = JSON.parse(b.body) as { type: string };
      expect(WS_TYPES as readonly string[], `line ${b.line}`).toContain(msg.type);
      seen.add(msg.type);
    }
    expect([...seen].sort()).toEqual([...WS_TYPES].sort());
  });

  it('has a devices.snapshot whose columns decode to every device, as the text reads them', () => {
    const snapshots = wsBlocks.map((b) => JSON.parse(b.body) as Record<string, unknown>).filter((m) => m.type === 'devices.snapshot');
    expect(snapshots).toHaveLength(1);
    const devices = decodeDeviceSnapshot(snapshots[0]!);
    expect(devices).toHaveLength(snapshots[0]!.count as number);
    // The doc spells out row 2 in prose.
    expect(devices?.[2]).toMatchObject({ id: 'cam-0002', status: 'online', lastSeen: 1775010602003, values: { panDeg: 135 }, valuesTs: 1775010601500 });
    expect(devices?.[1]).toMatchObject({ id: 'cam-0001', status: 'unknown', lastSeen: null, values: {}, valuesTs: null });
  });

  it('has HTTP bodies that parse, errors in the { code, message } form with a catalogue code', () => {
    expect(httpBlocks.length).toBeGreaterThan(0);
    for (const b of httpBlocks) {
      const body = JSON.parse(b.body) as Record<string, unknown>;
      if ('code' in body) {
        expect(Object.keys(body).sort(), `line ${b.line}`).toEqual(['code', 'message']);
        expect(Object.keys(ERRORS), `line ${b.line}`).toContain(body.code);
      }
    }
  });
});

// ---- mosquitto command lines, through the real ingest ------------------------------------------

const ledger = loadLedger(join(REPO, 'config/ledger/chashan-zhuhai.csv'));
const { config } = resolveConfig({ gateway: {} }, { source: 'docs-examples test', baseDir: join(REPO, 'config') });
const log = createLogger('silent');

function newIngest(): Ingest {
  const bus = new Bus(log);
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: config.gateway!, log, bus, metrics, ledger });
  return new Ingest({ log, bus, metrics, registry });
}

interface Publish {
  line: string;
  topic: string;
  payload: string;
  expect: { ok: true; duplicate: boolean } | { ok: false; reason: string };
}

function unquote(s: string): string {
  return s.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
}

/** The publishes one shell line makes, or none. */
function publishesOf(raw: string): Publish[] {
  const line = raw.replaceAll("'$(date +%s%3N)'", String(Date.now()));
  const note = /\s#\s*(duplicate|rejected:\s*([a-z_]+))\s*$/.exec(line);
  const expected: Publish['expect'] = !note
    ? { ok: true, duplicate: false }
    : note[1] === 'duplicate'
      ? { ok: true, duplicate: true }
      : { ok: false, reason: note[2]! };
  const out: Publish[] = [];
  if (/\bmosquitto_pub\b/.test(line)) {
    const topic = /\s-t\s+(\S+)/.exec(line)?.[1];
    const message = /\s-m\s+'([^']*)'/.exec(line)?.[1] ?? (/\s-n(\s|$)/.test(line) ? '' : undefined);
    if (topic !== undefined && message !== undefined) out.push({ line: raw, topic: unquote(topic), payload: message, expect: expected });
  }
  const willTopic = /--will-topic\s+(\S+)/.exec(line)?.[1];
  const willPayload = /--will-payload\s+'([^']*)'/.exec(line)?.[1];
  if (willTopic !== undefined && willPayload !== undefined) {
    out.push({ line: raw, topic: unquote(willTopic), payload: willPayload, expect: expected });
  }
  return out;
}

const shellBlocks = blocks.filter((b) => b.lang === 'sh').map((b) => ({ line: b.line, publishes: b.body.split('\n').flatMap(publishesOf) }));

describe('docs/protocol.md mosquitto examples, through the gateway ingest', () => {
  it('has command lines to check', () => {
    expect(shellBlocks.flatMap((b) => b.publishes).length).toBeGreaterThan(10);
  });

  it.each(shellBlocks.filter((b) => b.publishes.length > 0).map((b) => [`block at line ${b.line}`, b] as const))('%s', (_name, block) => {
    const ingest = newIngest();
    for (const p of block.publishes) {
      const result: IngestResult = ingest.handle(p.topic, Buffer.from(p.payload, 'utf8'));
      const got = result.ok ? { ok: true, duplicate: result.duplicate } : { ok: false, reason: result.reason };
      expect(got, `${p.line}\n${result.ok ? '' : result.detail}`).toEqual(p.expect);
    }
  });

  it('publishes with QoS 1', () => {
    for (const raw of doc.split('\n').filter((l) => /^[^`]*\bmosquitto_pub\b/.test(l))) expect(raw).toMatch(/\s-q 1\s/);
  });
});

// ---- the doc names what the code defines -------------------------------------------------------

const INGEST_REASONS = ['bad_topic', 'unknown_device', 'too_large', 'not_json', 'schema', 'forbidden'] as const satisfies readonly IngestReason[];
// Fails to compile when ingest gains a reason this list (and so the doc check) does not have.
const allReasonsListed: Exclude<IngestReason, (typeof INGEST_REASONS)[number]> extends never ? true : false = true;

describe('docs/protocol.md covers the contract', () => {
  const mentions = (text: string, word: string) => text.includes(`\`${word}\``);

  it('names every reject reason, event type, command name and ack status', () => {
    expect(allReasonsListed).toBe(true);
    for (const words of [INGEST_REASONS, EVENT_TYPES, COMMAND_NAMES, ACK_STATUSES, DEVICE_KINDS]) {
      for (const w of words) expect(mentions(doc, w), w).toBe(true);
    }
  });

  it('lists every API error code with its HTTP status', () => {
    for (const [code, { status }] of Object.entries(ERRORS)) {
      expect(doc, code).toMatch(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
    }
  });

  it('states the id pattern and the payload limit', () => {
    expect(doc).toContain(ID_PATTERN);
    expect(doc).toContain(`${MAX_PAYLOAD_BYTES} bytes`);
  });

  it('documents every telemetry field of every kind, here and in docs/storage.md', () => {
    for (const kind of DEVICE_KINDS) {
      const fields = Object.keys((TelemetryValuesByKind[kind] as { properties: Record<string, unknown> }).properties);
      for (const f of fields) {
        expect(doc, `${kind}.${f} in protocol.md`).toMatch(new RegExp(`^\\| \`${f}\` \\|`, 'm'));
        expect(mentions(storageDoc, f), `${kind}.${f} in storage.md`).toBe(true);
      }
    }
  });
});
