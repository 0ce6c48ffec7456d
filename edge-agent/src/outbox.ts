/**
 * The agent's persistent outbox (store-and-forward). Every reading is written here before it is
 * sent and deleted only when the broker has acknowledged it (QoS1 PUBACK), so a gateway outage,
 * or an agent killed with SIGKILL during one, loses nothing. SQLite in WAL mode survives a
 * process kill; `synchronous = NORMAL` trades the last moments before a power cut for speed.
 *
 * Order: events, states and acks (priority 1) go before routine telemetry (priority 0); within a
 * priority, oldest first, which keeps each device's readings in order. When the outbox holds more
 * than `maxMessages`, the oldest telemetry is dropped and counted; events are never dropped.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Reading } from './collectors/collector.js';
import { topics } from '../../protocol/topics.js';

export interface OutboxRow {
  id: number;
  priority: 0 | 1;
  topic: string;
  payload: Buffer;
  retain: boolean;
}

export interface OutboxStats {
  queued: number;
  dropped: number;
}

export class Outbox {
  readonly #db: Database.Database;
  readonly #maxMessages: number;
  readonly #seqs = new Map<string, number>();
  #count: number;
  #dropped: number;
  readonly #stmts: {
    insert: Database.Statement<[number, string, Buffer, number, number]>;
    setSeq: Database.Statement<[string, number]>;
    fetch: Database.Statement<[number, number, number], { id: number; topic: string; payload: Buffer; retain: number }>;
    remove: Database.Statement<[number]>;
    dropOldestTelemetry: Database.Statement<[number]>;
    addDropped: Database.Statement<[number]>;
  };
  readonly #append: (reading: Reading, ts: number) => void;

  constructor(file: string, opts: { maxMessages: number }) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        priority INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS outbox_priority_id ON outbox (priority, id);
      CREATE TABLE IF NOT EXISTS seqs (device TEXT PRIMARY KEY, seq INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT OR IGNORE INTO stats (key, value) VALUES ('dropped', 0);
    `);
    this.#maxMessages = opts.maxMessages;
    for (const row of this.#db.prepare<[], { device: string; seq: number }>('SELECT device, seq FROM seqs').all()) {
      this.#seqs.set(row.device, row.seq);
    }
    this.#count = (this.#db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
    this.#dropped = (this.#db.prepare("SELECT value FROM stats WHERE key = 'dropped'").get() as { value: number }).value;
    this.#stmts = {
      insert: this.#db.prepare('INSERT INTO outbox (priority, topic, payload, retain, created) VALUES (?, ?, ?, ?, ?)'),
      setSeq: this.#db.prepare('INSERT INTO seqs (device, seq) VALUES (?, ?) ON CONFLICT (device) DO UPDATE SET seq = excluded.seq'),
      fetch: this.#db.prepare('SELECT id, topic, payload, retain FROM outbox WHERE priority = ? AND id > ? ORDER BY id LIMIT ?'),
      remove: this.#db.prepare('DELETE FROM outbox WHERE id = ?'),
      dropOldestTelemetry: this.#db.prepare('DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority = 0 ORDER BY id LIMIT ?)'),
      addDropped: this.#db.prepare("UPDATE stats SET value = value + ? WHERE key = 'dropped'"),
    };
    // One transaction per reading: the message and its device's new seq land together.
    this.#append = this.#db.transaction((reading: Reading, ts: number) => {
      const seq = (this.#seqs.get(reading.deviceId) ?? -1) + 1;
      const { topic, payload, priority, retain } = encode(reading, seq);
      this.#stmts.insert.run(priority, topic, Buffer.from(payload), retain ? 1 : 0, ts);
      this.#stmts.setSeq.run(reading.deviceId, seq);
      this.#seqs.set(reading.deviceId, seq);
    });
  }

  /** Assigns the device's next seq and stores the message. */
  append(reading: Reading): void {
    this.#append(reading, Date.now());
    this.#count++;
    if (this.#count > this.#maxMessages) this.#enforceCap();
  }

  /** Oldest messages of one priority with id > afterId. */
  fetch(priority: 0 | 1, afterId: number, limit: number): OutboxRow[] {
    return this.#stmts.fetch.all(priority, afterId, limit).map((r) => ({
      id: r.id,
      priority,
      topic: r.topic,
      payload: r.payload,
      retain: r.retain === 1,
    }));
  }

  /** Deletes an acknowledged message. */
  remove(id: number): void {
    if (this.#stmts.remove.run(id).changes > 0) this.#count--;
  }

  stats(): OutboxStats {
    return { queued: this.#count, dropped: this.#dropped };
  }

  close(): void {
    this.#db.close();
  }

  #enforceCap(): void {
    // Drop in chunks (1 % of the cap) so a full outbox does not delete on every append.
    const n = Math.max(1, Math.ceil(this.#maxMessages / 100));
    const dropped = this.#stmts.dropOldestTelemetry.run(n).changes;
    if (dropped > 0) {
      this.#stmts.addDropped.run(dropped);
      this.#count -= dropped;
      this.#dropped += dropped;
    }
  }
}

function encode(reading: Reading, seq: number): { topic: string; payload: string; priority: 0 | 1; retain: boolean } {
  switch (reading.channel) {
    case 'telemetry':
      return {
        topic: topics.telemetry(reading.deviceId),
        payload: JSON.stringify({ ts: reading.ts, seq, values: reading.values }),
        priority: 0,
        retain: false,
      };
    case 'event':
      return {
        topic: topics.event(reading.deviceId),
        payload: JSON.stringify({ ts: reading.ts, seq, ...reading.event }),
        priority: 1,
        retain: false,
      };
    case 'ack':
      return {
        topic: topics.ack(reading.deviceId),
        payload: JSON.stringify({ ts: reading.ts, seq, cmdId: reading.cmdId, status: reading.status, ...(reading.reason ? { reason: reading.reason } : {}) }),
        priority: 1,
        retain: false,
      };
    case 'state':
      return {
        topic: topics.state(reading.deviceId),
        payload: JSON.stringify({ ts: reading.ts, seq, status: reading.status, ...(reading.reason ? { reason: reading.reason } : {}) }),
        priority: 1,
        retain: true,
      };
  }
}
