/**
 * ONVIF events on the pull-point model: each subscription is a bounded queue of notification
 * messages, and PullMessages is a long poll — it answers at once when messages are waiting,
 * otherwise when the first one arrives or the requested Timeout runs out.
 *
 * Alarms are ONVIF *properties*: a new subscription first receives one `Initialized` message per
 * property instance with its current state, every change is `Changed`, and a property that stops
 * existing (its detection rule is switched off) is `Deleted`.
 */
import { esc, utcMillis } from './xml.js';

export type PropertyOperation = 'Initialized' | 'Changed' | 'Deleted';

export interface NotificationMessage {
  topic: string;
  utcMs: number;
  operation: PropertyOperation;
  source: ReadonlyArray<readonly [string, string]>;
  /** absent on Deleted */
  data?: ReadonlyArray<readonly [string, string]>;
  /** the wsnt:NotificationMessage element, rendered once and shared by every subscription */
  xml: string;
}

export const CONCRETE_SET = 'http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet';

function items(list: ReadonlyArray<readonly [string, string]>): string {
  return list.map(([n, v]) => `<tt:SimpleItem Name="${esc(n)}" Value="${esc(v)}"/>`).join('');
}

export function notification(
  topic: string,
  utcMs: number,
  operation: PropertyOperation,
  source: ReadonlyArray<readonly [string, string]>,
  data?: ReadonlyArray<readonly [string, string]>,
): NotificationMessage {
  const xml =
    `<wsnt:NotificationMessage><wsnt:Topic Dialect="${CONCRETE_SET}">${esc(topic)}</wsnt:Topic>` +
    `<wsnt:Message><tt:Message UtcTime="${utcMillis(utcMs)}" PropertyOperation="${operation}">` +
    `<tt:Source>${items(source)}</tt:Source>` +
    (data ? `<tt:Data>${items(data)}</tt:Data>` : '') +
    `</tt:Message></wsnt:Message></wsnt:NotificationMessage>`;
  return data ? { topic, utcMs, operation, source, data, xml } : { topic, utcMs, operation, source, xml };
}

/**
 * A wsnt:TopicExpression in the ConcreteSet dialect: alternatives separated by `|`, each a
 * concrete topic (`tns1:VideoSource/MotionAlarm`), a subtree (`tns1:RuleEngine//.`), or one level
 * of children (`tns1:RuleEngine/FireDetector/*`). Prefixes are compared as written (every topic
 * here is `tns1:`). An empty expression matches everything.
 */
export function topicFilter(expression: string | undefined): (topic: string) => boolean {
  const alternatives = (expression ?? '')
    .split('|')
    .map((s) => s.trim())
    .filter(Boolean);
  if (alternatives.length === 0) return () => true;
  const tests = alternatives.map((alt): ((topic: string) => boolean) => {
    if (alt.endsWith('//.')) {
      const base = alt.slice(0, -3);
      return (t) => t === base || t.startsWith(`${base}/`);
    }
    if (alt.endsWith('//*')) {
      const base = alt.slice(0, -3);
      return (t) => t.startsWith(`${base}/`);
    }
    if (alt.endsWith('/*')) {
      const base = alt.slice(0, -2);
      return (t) => t.startsWith(`${base}/`) && !t.slice(base.length + 1).includes('/');
    }
    return (t) => t === alt;
  });
  return (topic) => tests.some((test) => test(topic));
}

interface Waiter {
  limit: number;
  timer: NodeJS.Timeout | undefined;
  resolve: (messages: NotificationMessage[]) => void;
}

export interface PullPointStats {
  delivered: number;
  dropped: number;
  pulls: number;
}

/** One pull-point subscription. Time values are the camera's clock (ms). */
export class PullPoint {
  readonly #queue: NotificationMessage[] = [];
  #waiter: Waiter | undefined;
  #wakeScheduled = false;
  #closed = false;
  readonly stats: PullPointStats = { delivered: 0, dropped: 0, pulls: 0 };

  constructor(
    readonly id: number,
    readonly accepts: (topic: string) => boolean,
    public terminationMs: number,
    private readonly maxQueued: number,
  ) {}

  get queued(): number {
    return this.#queue.length;
  }
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a message if the filter takes it; when full, the oldest message is dropped. */
  push(message: NotificationMessage): void {
    if (this.#closed || !this.accepts(message.topic)) return;
    this.#queue.push(message);
    if (this.#queue.length > this.maxQueued) {
      this.#queue.shift();
      this.stats.dropped++;
    }
    // Wake a waiting poll on the next turn, so messages raised together leave together.
    if (this.#waiter && !this.#wakeScheduled) {
      this.#wakeScheduled = true;
      setImmediate(() => {
        this.#wakeScheduled = false;
        const w = this.#waiter;
        if (w && this.#queue.length > 0) this.#finish(w, this.#take(w.limit));
      });
    }
  }

  #take(limit: number): NotificationMessage[] {
    const out = this.#queue.splice(0, Math.max(1, limit));
    this.stats.delivered += out.length;
    return out;
  }

  #finish(w: Waiter, messages: NotificationMessage[]): void {
    if (this.#waiter === w) this.#waiter = undefined;
    if (w.timer) clearTimeout(w.timer);
    w.resolve(messages);
  }

  /**
   * The long poll. Resolves with up to `limit` messages: at once if any are queued, else with the
   * first to arrive, else with none after `timeoutMs`. A second poll while one waits ends the
   * first with nothing. If `signal` aborts (the client hung up) the poll ends without taking
   * anything, so no message is lost to a dead connection.
   */
  pull(limit: number, timeoutMs: number, signal?: AbortSignal): Promise<NotificationMessage[]> {
    this.stats.pulls++;
    if (this.#waiter) this.#finish(this.#waiter, []);
    if (this.#queue.length > 0 || this.#closed || timeoutMs <= 0) return Promise.resolve(this.#take(limit));
    return new Promise((resolve) => {
      const w: Waiter = { limit, timer: undefined, resolve };
      w.timer = setTimeout(() => this.#finish(w, []), timeoutMs);
      this.#waiter = w;
      signal?.addEventListener(
        'abort',
        () => {
          if (this.#waiter === w) this.#finish(w, []);
        },
        { once: true },
      );
    });
  }

  /**
   * The camera went dark: a waiting poll is neither answered nor timed out (its HTTP request
   * simply hangs, as with a camera that lost power). Queued messages stay.
   */
  abandonWaiter(): void {
    const w = this.#waiter;
    if (!w) return;
    if (w.timer) clearTimeout(w.timer);
    this.#waiter = undefined;
  }

  /** Unsubscribed or expired: a waiting poll ends empty, later ones are refused by the caller. */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    if (this.#waiter) this.#finish(this.#waiter, []);
  }
}
