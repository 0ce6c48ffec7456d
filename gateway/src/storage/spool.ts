/**
 * The gateway's write-ahead spool: InfluxDB line protocol appended to segment files, made durable
 * by group commit (one write + fdatasync for everything appended since the last commit), then fed
 * to InfluxDB in order. A QoS1 PUBACK waits for the commit that holds its points (`barrier()`),
 * so an acknowledged reading survives a gateway killed with SIGKILL; a restart replays whatever
 * InfluxDB had not acknowledged (writes are idempotent: same series, same device time).
 *
 *   <dir>/00000001.seg, 00000002.seg, …   lines, newline-terminated, rotated at `segmentBytes`
 *   <dir>/checkpoint.json                 {seg, offset}: everything before it is in InfluxDB
 *
 * The checkpoint is written without fsync: after a crash it may be behind, which only means a
 * few batches are written to InfluxDB twice, harmlessly.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readSync, fstatSync, ftruncateSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { WriterLog } from './types.js';

export interface SpoolCursor {
  seg: number;
  offset: number;
}

export interface SpoolBatch {
  body: Buffer;
  lines: number;
  end: SpoolCursor;
}

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  fsync: boolean;
  /** Group commits start at least this far apart (ms); 0: each at the end of the turn it was asked in. */
  commitIntervalMs: number;
  segmentBytes?: number;
  log: WriterLog;
  /** Called after each commit with its duration (s) and size (bytes). */
  onCommit?: (seconds: number, bytes: number) => void;
}

interface Segment {
  id: number;
  path: string;
  /** Committed bytes (the reader never goes past them). */
  size: number;
}

interface Group {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function newGroup(): Group {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting on a group (QoS0 traffic); its failure is handled where it happens.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** One buffer for a commit's write; a single chunk is written as it is (no copy). */
function toBytes(pending: Array<string | Uint8Array>): Buffer {
  if (pending.length === 1) {
    const only = pending[0]!;
    return typeof only === 'string' ? Buffer.from(only) : Buffer.from(only.buffer, only.byteOffset, only.byteLength);
  }
  if (pending.every((p) => typeof p === 'string')) return Buffer.from(pending.join(''));
  return Buffer.concat(pending.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}

const SEG_RE = /^(\d{8})\.seg$/;
const segName = (id: number) => `${String(id).padStart(8, '0')}.seg`;

export class Spool {
  readonly #opts: Required<Omit<SpoolOptions, 'onCommit'>> & Pick<SpoolOptions, 'onCommit'>;
  readonly #segments: Segment[] = [];
  #writer: FileHandle | undefined;
  /** Appended since the last commit: lines (append) and UTF-8 chunks (appendChunk). */
  #pending: Array<string | Uint8Array> = [];
  #pendingBytes = 0;
  #pendingLines = 0;
  #group: Group = newGroup();
  #committing: Promise<void> | undefined;
  /** The group being written now; its waiters learn whether it reached the disk. */
  #inflightGroup: Group | undefined;
  #commitTimer: NodeJS.Immediate | NodeJS.Timeout | undefined;
  /** performance.now() when the last group commit started. */
  #lastCommitAt = Number.NEGATIVE_INFINITY;
  #reader: SpoolCursor = { seg: 0, offset: 0 };
  #acked: SpoolCursor = { seg: 0, offset: 0 };
  #readFds = new Map<number, number>();
  #unackedLines = 0;
  #totalBytes = 0;
  #closed = false;

  constructor(opts: SpoolOptions) {
    this.#opts = { segmentBytes: 64 * 1024 * 1024, ...opts };
  }

  /** Lines appended and not yet acknowledged by InfluxDB (the backlog). */
  get backlog(): number {
    return this.#unackedLines;
  }

  /** Bytes on disk, committed or about to be. */
  get bytes(): number {
    return this.#totalBytes + this.#pendingBytes;
  }

  /** True when the disk cap is reached: new data must be refused until InfluxDB catches up. */
  get full(): boolean {
    return this.bytes >= this.#opts.maxBytes;
  }

  /** Recovers what a previous run left: trims a torn last line, counts the backlog. */
  async open(): Promise<void> {
    const { dir } = this.#opts;
    mkdirSync(dir, { recursive: true });
    const ids = readdirSync(dir)
      .map((f) => SEG_RE.exec(f)?.[1])
      .filter((m): m is string => m !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    let checkpoint: SpoolCursor = { seg: ids[0] ?? 1, offset: 0 };
    try {
      const cp = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8')) as SpoolCursor;
      if (Number.isInteger(cp.seg) && Number.isInteger(cp.offset)) checkpoint = cp;
    } catch {
      // no checkpoint yet: start at the first segment
    }
    for (const id of ids) {
      const path = join(dir, segName(id));
      if (id < checkpoint.seg) {
        unlinkSync(path);
        continue;
      }
      this.#segments.push({ id, path, size: fstatSizeOf(path) });
    }
    const last = this.#segments.at(-1);
    if (last) last.size = trimTornTail(last.path, last.size, this.#opts.log);
    if (!this.#segments.some((s) => s.id === checkpoint.seg)) checkpoint = { seg: this.#segments[0]?.id ?? checkpoint.seg, offset: 0 };
    this.#reader = checkpoint;
    this.#acked = checkpoint;
    this.#totalBytes = this.#segments.reduce((n, s) => n + s.size, 0);
    this.#unackedLines = this.#countLinesFrom(checkpoint);
    if (!last || last.size >= this.#opts.segmentBytes) {
      const id = (last?.id ?? checkpoint.seg - 1) + 1;
      this.#segments.push({ id, path: join(dir, segName(id)), size: 0 });
    }
    this.#writer = await open(this.#segments.at(-1)!.path, 'a');
    if (this.#unackedLines > 0) this.#opts.log.info({ lines: this.#unackedLines, bytes: this.#totalBytes }, 'spool holds points from before; replaying them to InfluxDB');
  }

  /** Appends one line (no newline). Durable once the promise of `barrier()` resolves. */
  append(line: string): void {
    const text = `${line}\n`;
    this.#pending.push(text);
    this.#pendingBytes += Buffer.byteLength(text);
    this.#pendingLines++;
    this.#unackedLines++;
    this.#scheduleCommit();
  }

  /** Appends `lines` newline-terminated lines at once (UTF-8 bytes another thread already joined). */
  appendChunk(chunk: Uint8Array, lines: number): void {
    if (lines <= 0) return;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    this.#pendingLines += lines;
    this.#unackedLines += lines;
    this.#scheduleCommit();
  }

  /** A promise for the commit of everything appended so far; undefined when nothing is pending. */
  barrier(): Promise<void> | undefined {
    if (this.#pending.length > 0) return this.#group.promise;
    return this.#inflightGroup?.promise;
  }

  /** The next run of committed lines after the read cursor (within one segment). */
  readBatch(maxLines: number, maxBytes: number): SpoolBatch | undefined {
    for (;;) {
      const seg = this.#segments.find((s) => s.id === this.#reader.seg);
      if (!seg) return undefined;
      const available = seg.size - this.#reader.offset;
      if (available <= 0) {
        const next = this.#segments.find((s) => s.id > seg.id);
        // Move on only when this segment is finished (no longer the one being written).
        if (!next || seg === this.#segments.at(-1)) return undefined;
        this.#reader = { seg: next.id, offset: 0 };
        // Everything in the finished segment is acknowledged already: let it go now.
        if (this.#acked.seg === seg.id && this.#acked.offset >= seg.size) this.ack(this.#reader, 0);
        continue;
      }
      // Read about what maxLines need (lines are ~150 bytes), not maxBytes each time: a large
      // backlog would otherwise cost a multi-megabyte read and allocation per batch. A line
      // longer than that guess is read again with the full allowance.
      const fd = this.#readFd(seg);
      const limit = Math.min(available, maxBytes);
      let len = Math.min(limit, Math.max(64 * 1024, maxLines * 512));
      let buf: Buffer;
      let end = 0;
      let lines = 0;
      for (;;) {
        buf = Buffer.allocUnsafe(len);
        const got = readSync(fd, buf, 0, len, this.#reader.offset);
        for (let i = buf.indexOf(10, 0); i !== -1 && i < got; i = buf.indexOf(10, i + 1)) {
          end = i + 1;
          if (++lines >= maxLines) break;
        }
        if (lines > 0 || len === limit) break;
        len = limit;
      }
      if (lines === 0) {
        if (limit === available) return undefined; // cannot happen: committed data ends in a newline
        throw new Error(`a spool line is longer than ${maxBytes} bytes`);
      }
      const endCursor = { seg: seg.id, offset: this.#reader.offset + end };
      this.#reader = endCursor;
      return { body: buf.subarray(0, end), lines, end: endCursor };
    }
  }

  /** Where the next readBatch starts. */
  get readCursor(): SpoolCursor {
    return { ...this.#reader };
  }

  /** Rewinds the reader to the last acknowledged position (a failed write is sent again). */
  rewind(to: SpoolCursor): void {
    this.#reader = { ...to };
  }

  /** Records that InfluxDB holds everything before `end`; drops finished segments. */
  ack(end: SpoolCursor, lines: number): void {
    this.#unackedLines = Math.max(0, this.#unackedLines - lines);
    this.#acked = { ...end };
    const cpPath = join(this.#opts.dir, 'checkpoint.json');
    writeFileSync(`${cpPath}.tmp`, JSON.stringify(end));
    renameSync(`${cpPath}.tmp`, cpPath);
    while (this.#segments.length > 1 && this.#segments[0]!.id < end.seg) {
      const done = this.#segments.shift()!;
      const fd = this.#readFds.get(done.id);
      if (fd !== undefined) closeSync(fd);
      this.#readFds.delete(done.id);
      unlinkSync(done.path);
      this.#totalBytes -= done.size;
    }
  }

  /** Commits what is pending and closes the files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#commitTimer as NodeJS.Timeout);
    clearImmediate(this.#commitTimer as NodeJS.Immediate);
    await this.#committing;
    if (this.#pending.length > 0) await this.#commit();
    await this.#writer?.close();
    for (const fd of this.#readFds.values()) closeSync(fd);
    this.#readFds.clear();
  }

  #scheduleCommit(): void {
    if (this.#commitTimer || this.#committing || this.#closed) return;
    const run = () => {
      this.#commitTimer = undefined;
      void this.#commit();
    };
    // Commits start at least commitIntervalMs apart; after a quiet spell the next one goes at the end of this turn.
    const wait = this.#lastCommitAt + this.#opts.commitIntervalMs - performance.now();
    this.#commitTimer = wait >= 1 ? setTimeout(run, wait) : setImmediate(run);
  }

  #commit(): Promise<void> {
    if (this.#pending.length === 0 || !this.#writer) return Promise.resolve();
    this.#lastCommitAt = performance.now();
    const group = this.#group;
    const lines = this.#pendingLines;
    const chunk = toBytes(this.#pending);
    this.#inflightGroup = group;
    this.#group = newGroup();
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#pendingLines = 0;
    const writer = this.#writer;
    const seg = this.#segments.at(-1)!;
    const started = performance.now();
    const done = (async () => {
      try {
        await writer.write(chunk);
        if (this.#opts.fsync) await writer.datasync();
        seg.size += chunk.length;
        this.#totalBytes += chunk.length;
        this.#opts.onCommit?.((performance.now() - started) / 1000, chunk.length);
        if (seg.size >= this.#opts.segmentBytes) await this.#rotate().catch((err: Error) => this.#opts.log.error({ err: err.message }, 'spool rotation failed; continuing in the current segment'));
        group.resolve();
      } catch (err) {
        this.#opts.log.error({ err: (err as Error).message }, 'spool write failed; the messages are not acknowledged');
        this.#unackedLines -= lines;
        // Cut off a partial write so the next commit does not land behind garbage.
        await writer.truncate(seg.size).catch(() => undefined);
        group.reject(err as Error);
      }
    })();
    this.#committing = done.finally(() => {
      this.#committing = undefined;
      this.#inflightGroup = undefined;
      if (this.#pending.length > 0) this.#scheduleCommit();
    });
    return this.#committing;
  }

  async #rotate(): Promise<void> {
    const id = this.#segments.at(-1)!.id + 1;
    const path = join(this.#opts.dir, segName(id));
    const next = await open(path, 'a');
    const old = this.#writer;
    this.#segments.push({ id, path, size: 0 });
    this.#writer = next;
    await old?.close();
  }

  #readFd(seg: Segment): number {
    let fd = this.#readFds.get(seg.id);
    if (fd === undefined) {
      fd = openSync(seg.path, 'r');
      this.#readFds.set(seg.id, fd);
    }
    return fd;
  }

  #countLinesFrom(from: SpoolCursor): number {
    let n = 0;
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (const seg of this.#segments) {
      if (seg.id < from.seg) continue;
      const fd = openSync(seg.path, 'r');
      try {
        for (let pos = seg.id === from.seg ? from.offset : 0; pos < seg.size; ) {
          const got = readSync(fd, buf, 0, Math.min(buf.length, seg.size - pos), pos);
          if (got <= 0) break;
          for (let i = buf.indexOf(10, 0); i !== -1 && i < got; i = buf.indexOf(10, i + 1)) n++;
          pos += got;
        }
      } finally {
        closeSync(fd);
      }
    }
    return n;
  }
}

function fstatSizeOf(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** A crash mid-write can leave a partial last line; it was never acknowledged, so it goes. */
function trimTornTail(path: string, size: number, log: WriterLog): number {
  if (size === 0) return 0;
  const fd = openSync(path, 'r+');
  try {
    const chunk = Buffer.allocUnsafe(64 * 1024);
    for (let end = size; end > 0; ) {
      const start = Math.max(0, end - chunk.length);
      const got = readSync(fd, chunk, 0, end - start, start);
      const nl = chunk.subarray(0, got).lastIndexOf(10);
      if (nl !== -1) {
        const keep = start + nl + 1;
        if (keep < size) {
          ftruncateSync(fd, keep);
          log.warn({ file: path, bytes: size - keep }, 'trimmed a torn write at the end of the spool');
        }
        return keep;
      }
      end = start;
    }
    ftruncateSync(fd, 0);
    return 0;
  } finally {
    closeSync(fd);
  }
}
