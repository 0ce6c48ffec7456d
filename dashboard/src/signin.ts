/**
 * The sign-in screen (用户登录). It is the whole page while nobody is signed in: the map and its
 * data stay out of sight until the gateway accepts a session. The gateway keeps the session in an
 * HttpOnly cookie; this view never sees or stores a token.
 */
import { ApiError, login, type User } from './api.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';

/** Why the screen is shown, said above the form. */
export type SignInNotice = 'expired' | 'signedOut' | null;

export interface SignInOptions {
  root: HTMLElement;
  i18n: I18n;
  onSignedIn: (user: User) => void;
}

type Status = { kind: 'error' | 'info'; text: () => string } | null;

export class SignInView {
  readonly #root: HTMLElement;
  readonly #i18n: I18n;
  readonly #onSignedIn: (user: User) => void;
  readonly #form: HTMLFormElement;
  readonly #username: HTMLInputElement;
  readonly #password: HTMLInputElement;
  readonly #submit: HTMLButtonElement;
  readonly #notice = h('p', { class: 'signin-notice', 'data-testid': 'signin-notice', role: 'status' });
  readonly #error = h('p', { class: 'form-message', 'data-kind': 'error', 'data-testid': 'signin-error', role: 'alert' });
  readonly #pending = h('p', { class: 'signin-pending muted', 'data-testid': 'signin-pending', role: 'status' });
  #noticeKey: MessageKey | null = null;
  #status: Status = null;
  #pendingText: (() => string) | null = null;
  #busy = false;

  constructor(options: SignInOptions) {
    this.#root = options.root;
    this.#i18n = options.i18n;
    this.#onSignedIn = options.onSignedIn;
    const field = (id: string, labelKey: MessageKey, input: HTMLInputElement) =>
      h('div', { class: 'field' }, h('label', { for: id, 'data-i18n': labelKey }), input);
    this.#username = h('input', {
      id: 'signin-username',
      name: 'username',
      type: 'text',
      autocomplete: 'username',
      autocapitalize: 'none',
      spellcheck: 'false',
      maxlength: '64',
      'data-testid': 'signin-username',
    });
    this.#password = h('input', {
      id: 'signin-password',
      name: 'password',
      type: 'password',
      autocomplete: 'current-password',
      maxlength: '200',
      'data-testid': 'signin-password',
    });
    this.#submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'signin-submit' });
    // novalidate: the page says what is missing itself, in the page's language.
    this.#form = h(
      'form',
      { class: 'signin-form', novalidate: '', 'aria-labelledby': 'signin-title' },
      field('signin-username', 'auth.username', this.#username),
      field('signin-password', 'auth.password', this.#password),
      this.#error,
      this.#submit,
    );
    this.#form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#signIn();
    });
    this.#root.replaceChildren(
      h(
        'div',
        { class: 'signin-card' },
        h(
          'div',
          { class: 'signin-brand' },
          h('span', { class: 'brand-mark signin-mark', 'aria-hidden': 'true' }),
          h('div', {}, h('div', { class: 'signin-product', 'data-i18n': 'app.brand' }), h('div', { class: 'muted', 'data-i18n': 'app.subtitle' })),
        ),
        h('h1', { id: 'signin-title', 'data-i18n': 'auth.title' }),
        h('p', { class: 'muted', 'data-i18n': 'auth.intro' }),
        this.#notice,
        this.#pending,
        this.#form,
      ),
    );
    this.#i18n.onChange(() => this.#render());
    this.#render();
  }

  /** Shows the form, with a notice (session expired, signed out) and optionally a username filled in. */
  show(notice: SignInNotice, username = ''): void {
    this.#noticeKey = notice === 'expired' ? 'auth.expired' : notice === 'signedOut' ? 'auth.signedOut' : null;
    this.#status = null;
    this.#pendingText = null;
    this.#busy = false;
    this.#username.value = username;
    this.#password.value = '';
    this.#root.hidden = false;
    this.#render();
    (username ? this.#password : this.#username).focus();
  }

  /** While the page finds out whether a session exists: a status line instead of the form. */
  showPending(text: () => string): void {
    this.#pendingText = text;
    this.#root.hidden = false;
    this.#render();
  }

  hide(): void {
    this.#root.hidden = true;
    this.#password.value = '';
    this.#status = null;
  }

  async #signIn(): Promise<void> {
    if (this.#busy) return;
    const username = this.#username.value.trim();
    const password = this.#password.value;
    if (!username || !password) {
      this.#status = { kind: 'error', text: () => this.#i18n.t('auth.missing') };
      this.#render();
      (username ? this.#password : this.#username).focus();
      return;
    }
    this.#busy = true;
    this.#status = null;
    this.#render();
    try {
      const { user } = await login(username, password);
      this.#busy = false;
      this.#noticeKey = null;
      this.hide();
      this.#onSignedIn(user);
    } catch (err) {
      this.#busy = false;
      this.#status = { kind: 'error', text: () => describeError(this.#i18n, err) };
      this.#render();
      if (err instanceof ApiError && err.code === 'BAD_LOGIN') {
        this.#password.value = '';
        this.#password.focus();
      }
    }
  }

  #render(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    this.#i18n.applyStatic(this.#root);
    this.#notice.textContent = this.#noticeKey ? t(this.#noticeKey) : '';
    this.#notice.hidden = this.#noticeKey === null;
    this.#notice.dataset.kind = this.#noticeKey === 'auth.expired' ? 'warning' : 'info';
    this.#pending.textContent = this.#pendingText?.() ?? '';
    this.#pending.hidden = this.#pendingText === null;
    this.#form.hidden = this.#pendingText !== null;
    this.#error.textContent = this.#status?.text() ?? '';
    this.#error.hidden = this.#status === null;
    this.#root.dataset.state = this.#busy ? 'busy' : this.#status ? 'error' : 'idle';
    this.#submit.disabled = this.#busy;
    this.#submit.textContent = t(this.#busy ? 'auth.submitting' : 'auth.submit');
    this.#username.disabled = this.#busy;
    this.#password.disabled = this.#busy;
  }
}
