/**
 * Small DOM helpers shared by the views. Strings always become text nodes: nothing from the
 * gateway or from users (names, usernames, audit details) is ever parsed as HTML.
 */

export type Child = Node | string;

/** createElement with attributes; string children become text nodes (never HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  el.append(...children);
  return el;
}

export function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html is missing #${id}`);
  return el;
}

/** Sets text only when it differs: an equal write still replaces the text node and re-lays it out. */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Work views do at animation frames, one piece per frame, first come first served: a burst of
 * incidents makes the inbox, the incident layer and the panel all want to redraw, and done in the
 * same frame they made it a long one (over 50 ms with 50,000 devices on the map, bench/map.ts).
 */
const frameQueue: Array<() => void> = [];
let frameRequested = 0;

function runFrameQueue(): void {
  frameRequested = 0;
  const job = frameQueue.shift();
  // Asked before the job runs: one that throws must not stall the others.
  if (frameQueue.length > 0) frameRequested = requestAnimationFrame(runFrameQueue);
  job?.();
}

/**
 * Runs `fn` once, at an animation frame of its own (after the work queued before it, one piece a
 * frame), or after `maxDelayMs` if no frame comes (a hidden tab), whichever is first.
 */
export function afterFrame(fn: () => void, maxDelayMs = 250): { cancel(): void } {
  let done = false;
  const dequeue = () => {
    const k = frameQueue.indexOf(run);
    if (k >= 0) frameQueue.splice(k, 1);
  };
  const run = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    dequeue();
    fn();
  };
  frameQueue.push(run);
  if (frameRequested === 0) frameRequested = requestAnimationFrame(runFrameQueue);
  const timer = setTimeout(run, maxDelayMs);
  return {
    cancel: () => {
      done = true;
      clearTimeout(timer);
      dequeue();
    },
  };
}

/**
 * Runs `fn` at an animation frame after `request()`, at most once per `minIntervalMs`: for views
 * that show a burst of messages (tens a second) and need not redraw for each.
 */
export class FrameThrottle {
  readonly #fn: () => void;
  readonly #minIntervalMs: number;
  #last = -Infinity;
  #pending: { cancel(): void } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(fn: () => void, minIntervalMs: number) {
    this.#fn = fn;
    this.#minIntervalMs = minIntervalMs;
  }

  request(): void {
    if (this.#pending || this.#timer !== null) return;
    const wait = this.#last + this.#minIntervalMs - performance.now();
    if (wait <= 0) this.#pending = afterFrame(() => this.run());
    else
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#pending = afterFrame(() => this.run());
      }, wait);
  }

  /** Runs it now (a user's action), and drops a pending run. */
  run(): void {
    this.cancel();
    this.#last = performance.now();
    this.#fn();
  }

  cancel(): void {
    this.#pending?.cancel();
    this.#pending = null;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
