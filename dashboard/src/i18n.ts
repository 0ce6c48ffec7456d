/**
 * Translations. Every user-visible string lives in i18n/[<part>.]<lang>.json; zh-CN is the reference
 * catalogue and the default. Catalogues are bundled (they are small) so the first paint is
 * already in the right language.
 */
import zhCore from './i18n/zh-CN.json' with { type: 'json' };
import enCore from './i18n/en.json' with { type: 'json' };
import zhIncidents from './i18n/incidents.zh-CN.json' with { type: 'json' };
import enIncidents from './i18n/incidents.en.json' with { type: 'json' };
import zhBroadcast from './i18n/broadcast.zh-CN.json' with { type: 'json' };
import enBroadcast from './i18n/broadcast.en.json' with { type: 'json' };
import zhVideo from './i18n/video.zh-CN.json' with { type: 'json' };
import enVideo from './i18n/video.en.json' with { type: 'json' };

// One catalogue per language, kept in a file per part of the dashboard.
const zhCN = { ...zhCore, ...zhIncidents, ...zhBroadcast, ...zhVideo };
const en = { ...enCore, ...enIncidents, ...enBroadcast, ...enVideo };

export type MessageKey = keyof typeof zhCN;
export const LANGS = ['zh-CN', 'en'] as const;
export type Lang = (typeof LANGS)[number];

/** Typed as Record<MessageKey, string> so a key missing from en.json fails `tsc`. */
const CATALOGS: Record<Lang, Record<MessageKey, string>> = { 'zh-CN': zhCN, en };

const STORAGE_KEY = 'greenshield.lang';
export const DEFAULT_LANG: Lang = 'zh-CN';

export type MessageParams = Record<string, string | number>;

function isLang(value: unknown): value is Lang {
  return typeof value === 'string' && (LANGS as readonly string[]).includes(value);
}

/** The remembered choice, else Chinese (the command centers' language), not the browser's locale. */
export function rememberedLang(): Lang {
  try {
    const saved = window.localStorage.getItem(STORAGE_KEY);
    if (isLang(saved)) return saved;
  } catch {
    // localStorage can throw (disabled storage, sandboxed frame); fall back to the default.
  }
  return DEFAULT_LANG;
}

export class I18n {
  #lang: Lang;
  #listeners = new Set<() => void>();
  #numberFormats = new Map<number, Intl.NumberFormat>();
  #dateTime!: Intl.DateTimeFormat;
  #relative!: Intl.RelativeTimeFormat;

  constructor(lang: Lang) {
    this.#lang = lang;
    this.#makeFormats();
  }

  get lang(): Lang {
    return this.#lang;
  }

  /** The translation of `key`, with `{name}` placeholders filled from `params`. */
  t(key: MessageKey, params?: MessageParams): string {
    const text = CATALOGS[this.#lang][key];
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name: string) => {
      const value = params[name];
      return value === undefined ? whole : String(value);
    });
  }

  /** True if `key` is a message key (for keys built from data, such as telemetry field names). */
  has(key: string): key is MessageKey {
    return Object.hasOwn(zhCN, key);
  }

  /** `key` as written in another language's catalogue (the language switch names each language in itself). */
  tIn(lang: Lang, key: MessageKey): string {
    return CATALOGS[lang][key];
  }

  setLang(lang: Lang): void {
    if (lang === this.#lang) return;
    this.#lang = lang;
    this.#makeFormats();
    try {
      window.localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // Not remembered, but the switch still applies to this page.
    }
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (err) {
        console.error('language listener failed', err);
      }
    }
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Fills elements marked `data-i18n="key"` (text) and `data-i18n-title` / `data-i18n-aria-label` /
   * `data-i18n-placeholder`.
   */
  applyStatic(root: ParentNode): void {
    // Only when they change: writing <html lang> even with the same value restyles, re-lays-out
    // and re-shapes the text of the whole page (20-80 ms at 50,000 devices), and views call this
    // on every render.
    if (document.documentElement.lang !== this.#lang) document.documentElement.lang = this.#lang;
    const title = this.t('app.title');
    if (document.title !== title) document.title = title;
    for (const el of root.querySelectorAll<HTMLElement>('[data-i18n]')) {
      const key = el.dataset.i18n;
      if (key && this.has(key) && el.textContent !== this.t(key)) el.textContent = this.t(key);
    }
    for (const el of root.querySelectorAll<HTMLElement>('[data-i18n-title]')) {
      const key = el.dataset.i18nTitle;
      if (key && this.has(key) && el.title !== this.t(key)) el.title = this.t(key);
    }
    for (const el of root.querySelectorAll<HTMLElement>('[data-i18n-aria-label]')) {
      const key = el.dataset.i18nAriaLabel;
      if (key && this.has(key) && el.getAttribute('aria-label') !== this.t(key)) el.setAttribute('aria-label', this.t(key));
    }
    for (const el of root.querySelectorAll<HTMLElement>('[data-i18n-placeholder]')) {
      const key = el.dataset.i18nPlaceholder;
      if (key && this.has(key) && el.getAttribute('placeholder') !== this.t(key)) el.setAttribute('placeholder', this.t(key));
    }
  }

  number(value: number, fractionDigits = 0): string {
    let format = this.#numberFormats.get(fractionDigits);
    if (!format) {
      format = new Intl.NumberFormat(this.#lang, {
        minimumFractionDigits: fractionDigits,
        maximumFractionDigits: fractionDigits,
      });
      this.#numberFormats.set(fractionDigits, format);
    }
    return format.format(value);
  }

  dateTime(ms: number): string {
    return this.#dateTime.format(ms);
  }

  /** "5 秒前" / "5 seconds ago", in the largest unit that keeps the number small. */
  relative(ms: number, now = Date.now()): string {
    const seconds = Math.round((ms - now) / 1000);
    const abs = Math.abs(seconds);
    if (abs < 60) return this.#relative.format(seconds, 'second');
    if (abs < 3600) return this.#relative.format(Math.round(seconds / 60), 'minute');
    if (abs < 86_400) return this.#relative.format(Math.round(seconds / 3600), 'hour');
    return this.#relative.format(Math.round(seconds / 86_400), 'day');
  }

  #makeFormats(): void {
    this.#numberFormats.clear();
    this.#dateTime = new Intl.DateTimeFormat(this.#lang, {
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hour12: false,
    });
    this.#relative = new Intl.RelativeTimeFormat(this.#lang, { numeric: 'always' });
  }
}
