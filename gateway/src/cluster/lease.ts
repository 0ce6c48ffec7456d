/**
 * The leader's lease: a PostgreSQL advisory lock (`pg_try_advisory_lock(key)`) held by a session
 * of its own — not the store's connection, since a lock lives and dies with its session. Every
 * instance tries to take it every `intervalMs`; the holder leads and confirms its session with a
 * trivial query on the same beat.
 *
 * - A dead process (SIGKILL, power) closes its socket: PostgreSQL ends the session, frees the lock,
 *   and another instance takes it at its next try, within about one interval.
 * - A silent network: the leader stops leading once its session has not answered for `ttlMs`
 *   (it cannot know whether it still holds the lock); the server ends that idle session
 *   `idle_session_timeout` = ttlMs + 1 s after the last query it received — so after the old
 *   leader stopped — and only then can another instance take the lock. Never two leaders, as long
 *   as the lock is freed only by the session's end (an operator's pg_terminate_backend ends it at
 *   once: the leader learns it at its next beat).
 * - A lost connection (an error, the server going away) ends leadership at once.
 *
 * The lease connection also LISTENs for the cluster's notifications (cluster/leadership.ts) and
 * sends them. Everything here is asynchronous, off the ingest path.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';

export interface LeaseOptions {
  /** postgres://… with the password in it (postgres.ts withPassword). */
  connectionString: string;
  /** The URL without credentials, for logs. */
  displayUrl: string;
  applicationName: string;
  /** Advisory lock key (a 64-bit integer, as decimal text). */
  key: string;
  intervalMs: number;
  ttlMs: number;
  connectTimeoutMs: number;
  /** Channels to LISTEN on. */
  channels: readonly string[];
  log: Logger;
  now?: () => number;
}

/** The default lock key of a site: 63 bits of SHA-256("greenshield-leader:<site id>"). */
export function leaseKeyOf(siteId: string): string {
  const digest = createHash('sha256').update(`greenshield-leader:${siteId}`).digest();
  return (digest.readBigUInt64BE(0) >> 1n).toString();
}

export class LeaderLease {
  readonly #opts: LeaseOptions;
  readonly #now: () => number;
  #client: pg.Client | undefined;
  #leading = false;
  /** Leading is trusted until then (the last confirmed beat's send time + ttl). */
  #validUntil = 0;
  #since: number | null = null;
  #timer: NodeJS.Timeout | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #stopped = true;
  /** No attempt to take the lock before then (after this instance gave it back). */
  #pausedUntil = 0;
  #lastError: string | null = null;
  /** Queries on the lease connection run one after another (pg wants no overlap). */
  #chain: Promise<unknown> = Promise.resolve();
  readonly #changeListeners = new Set<(leading: boolean, reason: string) => void>();
  readonly #notificationListeners = new Set<(channel: string, payload: string) => void>();

  constructor(opts: LeaseOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** True while this instance holds the lock and its session answered within the ttl. */
  get leading(): boolean {
    return this.#leading && this.#now() < this.#validUntil;
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  status(): { leading: boolean; since: number | null; connected: boolean; lastError: string | null } {
    return { leading: this.leading, since: this.#since, connected: this.connected, lastError: this.#lastError };
  }

  /** Called with true when this instance starts leading and false when it stops, and why. */
  onChange(listener: (leading: boolean, reason: string) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  onNotification(listener: (channel: string, payload: string) => void): () => void {
    this.#notificationListeners.add(listener);
    return () => this.#notificationListeners.delete(listener);
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Stops trying and ends the session (which frees the lock at once). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    this.#setLeading(false, 'stopping');
    if (client) await endQuietly(client, 2000);
  }

  /**
   * Gives the lock back (this instance could not take up the work) and does not try again for
   * `pauseMs`, so another instance can have it.
   */
  async release(pauseMs: number): Promise<void> {
    this.#pausedUntil = this.#now() + pauseMs;
    const client = this.#client;
    this.#setLeading(false, 'released');
    if (!client) return;
    try {
      await this.#run(client, 'SELECT pg_advisory_unlock($1::bigint)', [this.#opts.key]);
    } catch (err) {
      this.#lost(client, err as Error);
    }
  }

  /** Sends a notification on the lease connection; fails when it is down. */
  async notify(channel: string, payload: string): Promise<void> {
    const client = this.#client;
    if (!client) throw new Error('the lease connection is down');
    await this.#run(client, 'SELECT pg_notify($1, $2)', [channel, payload]);
  }

  /** A read on the lease connection (followers reading what the leader announced); fails when it is down. */
  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    const client = this.#client;
    if (!client) throw new Error('the lease connection is down');
    return (await this.#run<R>(client, sql, params)).rows;
  }

  #run<R extends pg.QueryResultRow>(client: pg.Client, sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    const result = this.#chain.then(() => client.query<R>(sql, params));
    this.#chain = result.catch(() => undefined);
    return result;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#beat(), delayMs);
    this.#timer.unref();
  }

  async #beat(): Promise<void> {
    const started = this.#now();
    let client: pg.Client | undefined;
    try {
      client = this.#client ?? (await this.#connect());
      // An answer counts only from the connection still in use (one declared lost meanwhile is ending, and its lock with it).
      if (this.#leading) {
        await this.#run(client, 'SELECT 1', []);
        if (this.#client === client && this.#leading) this.#confirm(started);
      } else if (started >= this.#pausedUntil) {
        const r = await this.#run<{ ok: boolean }>(client, 'SELECT pg_try_advisory_lock($1::bigint) AS ok', [this.#opts.key]);
        if (r.rows[0]?.ok === true && !this.#stopped && this.#client === client) {
          this.#confirm(started);
          this.#setLeading(true, 'lock taken');
        }
      }
      if (this.#lastError !== null) this.#opts.log.info({ url: this.#opts.displayUrl }, 'lease connection back');
      this.#lastError = null;
    } catch (err) {
      if (client) this.#lost(client, err as Error);
      else this.#failed(err as Error);
    }
    if (this.#stopped) {
      // stop() came while this beat was connecting or asking: what it got must not outlive it.
      const stray = this.#client;
      this.#client = undefined;
      if (stray) void endQuietly(stray, 2000);
      return;
    }
    this.#schedule(Math.max(0, this.#opts.intervalMs - (this.#now() - started)));
  }

  async #connect(): Promise<pg.Client> {
    const opts = this.#opts;
    const client = new pg.Client({
      connectionString: opts.connectionString,
      application_name: `${opts.applicationName}-lease`.slice(0, 63),
      connectionTimeoutMillis: opts.connectTimeoutMs,
      // A beat that does not come back is a lost session, well before the ttl runs out.
      query_timeout: Math.max(opts.intervalMs, Math.floor(opts.ttlMs / 2)),
      keepAlive: true,
    });
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('the lease connection ended')));
    client.on('notification', (n) => {
      for (const listener of this.#notificationListeners) {
        try {
          listener(n.channel, n.payload ?? '');
        } catch (err) {
          this.#opts.log.error({ err, channel: n.channel }, 'cluster notification listener failed');
        }
      }
    });
    try {
      await client.connect();
      // The server ends this session, freeing the lock, once it has been silent past the ttl.
      await client.query(`SET idle_session_timeout = ${Math.floor(opts.ttlMs + 1000)}`);
      for (const channel of opts.channels) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      void endQuietly(client, 1000);
      throw err;
    }
    this.#client = client;
    return client;
  }

  #confirm(sentAt: number): void {
    this.#validUntil = sentAt + this.#opts.ttlMs;
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => this.#expire(), Math.max(0, this.#validUntil - this.#now()) + 1);
    this.#expiry.unref();
  }

  /** The ttl ran out without a confirmed beat: stop leading, and end the session so the lock is freed. */
  #expire(): void {
    if (!this.#leading || this.#now() < this.#validUntil) return;
    const client = this.#client;
    if (client) this.#lost(client, new Error(`the lease was not confirmed within ${this.#opts.ttlMs} ms`));
    else this.#setLeading(false, 'lease expired');
  }

  #lost(client: pg.Client, err: Error): void {
    if (this.#client === client) {
      this.#client = undefined;
      void endQuietly(client, 1000);
    }
    this.#failed(err);
  }

  #failed(err: Error): void {
    if (this.#lastError === null && !this.#stopped) this.#opts.log.warn({ url: this.#opts.displayUrl, err: err.message }, 'lease connection failed; retrying every interval');
    this.#lastError = err.message;
    this.#setLeading(false, err.message);
  }

  #setLeading(leading: boolean, reason: string): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    this.#since = leading ? this.#now() : null;
    if (!leading) {
      this.#validUntil = 0;
      clearTimeout(this.#expiry);
    }
    for (const listener of this.#changeListeners) {
      try {
        listener(leading, reason);
      } catch (err) {
        this.#opts.log.error({ err, leading, reason }, 'leadership listener failed');
      }
    }
  }
}

/** end() waits for the server's goodbye, which never comes on a dead network: bounded. */
async function endQuietly(client: pg.Client, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.end().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}
