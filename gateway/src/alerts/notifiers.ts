/**
 * How a dispatch reaches people. Every notifier gets the same notice (an incident, the level it is
 * at, who covers it there) and reports per recipient whether it got through; the outcome goes into
 * the incident's dispatch list, so a command center sees "nobody in G07 is signed in" at once.
 *
 * - `PushNotifier` rings the phone view / dashboard of recipients who are signed in (WebSocket).
 * - `WebhookNotifier` POSTs the notice as JSON to an SMS or work-chat gateway, with an optional
 *   HMAC-SHA256 signature, a timeout and retries with backoff.
 */
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { EscalationLevel, Incident } from '../../../protocol/incidents.js';
import type { PushHub } from '../push/hub.js';

export interface Recipient {
  /** A username when the person has an account, else the roster contact's name. */
  name: string;
  username: string | null;
  phone: string | null;
  role: string | null;
}

export interface DispatchNotice {
  incident: Incident;
  level: EscalationLevel;
  recipients: Recipient[];
  /** 'dispatched' for the first level, 'escalated' after. */
  reason: 'dispatched' | 'escalated' | 'redispatched';
}

export interface NotifyOutcome {
  recipient: string;
  status: 'sent' | 'failed';
  detail: string | null;
}

export interface Notifier {
  readonly channel: string;
  notify(notice: DispatchNotice): Promise<NotifyOutcome[]>;
}

export class PushNotifier implements Notifier {
  readonly channel = 'ws';
  readonly #hub: Pick<PushHub, 'publish'>;

  constructor(hub: Pick<PushHub, 'publish'>) {
    this.#hub = hub;
  }

  async notify(notice: DispatchNotice): Promise<NotifyOutcome[]> {
    const outcomes: NotifyOutcome[] = [];
    for (const r of notice.recipients) {
      if (!r.username) continue;
      const sockets = this.#hub.publish(
        { type: 'incident.dispatch', incidentId: notice.incident.id, level: notice.level, title: notice.incident.title, ts: Date.now() },
        (user) => user.username === r.username,
      );
      outcomes.push(
        sockets > 0
          ? { recipient: r.username, status: 'sent', detail: `${sockets} open session(s)` }
          : { recipient: r.username, status: 'failed', detail: 'not signed in' },
      );
    }
    return outcomes;
  }
}

export interface WebhookOptions {
  url: string;
  secret?: string;
  timeoutMs: number;
  attempts: number;
  levels?: readonly EscalationLevel[];
  log: Logger;
  /** Base delay of the exponential backoff between attempts (tests shorten it). */
  backoffMs?: number;
}

export class WebhookNotifier implements Notifier {
  readonly channel: string;
  readonly #opts: WebhookOptions;

  constructor(opts: WebhookOptions) {
    this.#opts = opts;
    this.channel = `webhook:${new URL(opts.url).host}`;
  }

  async notify(notice: DispatchNotice): Promise<NotifyOutcome[]> {
    const { levels } = this.#opts;
    if (levels && !levels.includes(notice.level)) return [];
    const body = JSON.stringify({
      type: 'incident.dispatch',
      reason: notice.reason,
      level: notice.level,
      recipients: notice.recipients.map((r) => ({ name: r.name, phone: r.phone, role: r.role, username: r.username })),
      incident: notice.incident,
    });
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'x-greenshield-event': 'incident.dispatch' };
    if (this.#opts.secret) headers['x-greenshield-signature'] = createHmac('sha256', this.#opts.secret).update(body).digest('hex');
    const backoff = this.#opts.backoffMs ?? 1000;
    let lastError = 'not attempted';
    for (let attempt = 1; attempt <= this.#opts.attempts; attempt++) {
      try {
        const res = await fetch(this.#opts.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.#opts.timeoutMs) });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return this.#outcomes(notice, 'sent', attempt > 1 ? `HTTP ${res.status} after ${attempt} attempts` : `HTTP ${res.status}`);
        lastError = `HTTP ${res.status}`;
        // A 4xx other than 408/429 will not get better by retrying.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        lastError = (err as Error).name === 'TimeoutError' ? `no answer in ${this.#opts.timeoutMs} ms` : (err as Error).message;
      }
      if (attempt < this.#opts.attempts) await new Promise((r) => setTimeout(r, backoff * 2 ** (attempt - 1)));
    }
    this.#opts.log.warn({ url: this.#opts.url, incident: notice.incident.id, error: lastError }, 'webhook notification failed');
    return this.#outcomes(notice, 'failed', lastError);
  }

  #outcomes(notice: DispatchNotice, status: 'sent' | 'failed', detail: string): NotifyOutcome[] {
    const names = notice.recipients.length ? notice.recipients.map((r) => r.name) : ['(no roster contact)'];
    return names.map((recipient) => ({ recipient, status, detail }));
  }
}
