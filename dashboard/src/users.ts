/**
 * 用户管理 (admin only): the user list, creating a user, and per user changing name, role and
 * grids, disabling/enabling and resetting the password. The gateway checks everything again; its
 * `{ code, message }` errors are shown next to the form that caused them. Usernames and names are
 * set with textContent only.
 */
import { createUser, fetchUsers, updateUser, type User, type UserPatch } from './api.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';
import { ROLES, type Role } from './roles.js';

// The gateway's rules (gateway/src/http/auth-routes.ts), checked first here to answer in words.
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$/;
const GRID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MIN_PASSWORD = 8;

type Message = { kind: 'error' | 'ok'; text: () => string } | null;
type Invalid = { field: 'username' | 'displayName' | 'grids' | 'password'; text: () => string };

/** "G01, G02，G03" → ['G01', 'G02', 'G03'] (ASCII or full-width commas, or spaces). */
export function parseGrids(text: string): string[] {
  return [...new Set(text.split(/[,，、\s]+/).map((s) => s.trim()).filter(Boolean))];
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A form's message line: kept as a closure so a language switch re-translates it. */
class MessageLine {
  readonly el = h('p', { class: 'form-message', role: 'status' });
  #message: Message = null;
  constructor(testId: string) {
    this.el.dataset.testid = testId;
    this.render();
  }
  set(message: Message): void {
    this.#message = message;
    this.render();
  }
  render(): void {
    this.el.hidden = this.#message === null;
    this.el.dataset.kind = this.#message?.kind ?? '';
    this.el.setAttribute('role', this.#message?.kind === 'error' ? 'alert' : 'status');
    this.el.textContent = this.#message?.text() ?? '';
  }
}

interface UsersViewOptions {
  root: HTMLElement;
  i18n: I18n;
  /** The signed-in admin, who may not demote or disable themselves. */
  currentUser: () => User | null;
}

export class UsersView {
  readonly #root: HTMLElement;
  readonly #i18n: I18n;
  readonly #currentUser: () => User | null;
  #users: User[] = [];
  #state: 'idle' | 'loading' | 'ready' | 'failed' = 'idle';
  #loadError: unknown = null;
  #editingId: number | null = null;
  #abort: AbortController | null = null;

  readonly #count = h('span', { class: 'muted', 'data-testid': 'users-count' });
  readonly #listMessage = new MessageLine('users-message');
  readonly #tbody = h('tbody');
  readonly #table = h('table', { class: 'data-table users-table', 'data-testid': 'users-table' });

  // create form
  readonly #create = {
    form: h('form', { class: 'side-form', novalidate: '', 'data-testid': 'user-create' }),
    username: h('input', { id: 'new-username', type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '64', 'data-testid': 'new-username' }),
    displayName: h('input', { id: 'new-display-name', type: 'text', autocomplete: 'off', maxlength: '80', 'data-testid': 'new-display-name' }),
    role: h('select', { id: 'new-role', 'data-testid': 'new-role' }),
    grids: h('input', { id: 'new-grids', type: 'text', autocomplete: 'off', spellcheck: 'false', 'data-testid': 'new-grids' }),
    password: h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', maxlength: '200', 'data-testid': 'new-password' }),
    submit: h('button', { type: 'submit', class: 'primary', 'data-i18n': 'users.create.submit', 'data-testid': 'new-submit' }),
    message: new MessageLine('user-create-message'),
  };

  // edit panel: details form + password form
  readonly #edit = {
    panel: h('div', { class: 'edit-panel', 'data-testid': 'user-edit' }),
    title: h('h2', { class: 'edit-title' }),
    form: h('form', { class: 'side-form', novalidate: '' }),
    displayName: h('input', { id: 'edit-display-name', type: 'text', autocomplete: 'off', maxlength: '80', 'data-testid': 'edit-display-name' }),
    role: h('select', { id: 'edit-role', 'data-testid': 'edit-role' }),
    grids: h('input', { id: 'edit-grids', type: 'text', autocomplete: 'off', spellcheck: 'false', 'data-testid': 'edit-grids' }),
    selfNote: h('p', { class: 'muted', 'data-i18n': 'users.selfNote' }),
    save: h('button', { type: 'submit', class: 'primary', 'data-i18n': 'users.edit.save', 'data-testid': 'edit-save' }),
    message: new MessageLine('user-edit-message'),
    passwordForm: h('form', { class: 'side-form', novalidate: '' }),
    /** Tells a password manager whose password this is; not shown. */
    passwordUsername: h('input', { type: 'text', autocomplete: 'username', readonly: '', hidden: '', tabindex: '-1', 'aria-hidden': 'true' }),
    password: h('input', { id: 'edit-password', type: 'password', autocomplete: 'new-password', maxlength: '200', 'data-testid': 'edit-password' }),
    passwordSubmit: h('button', { type: 'submit', 'data-i18n': 'users.password.submit', 'data-testid': 'edit-password-submit' }),
    passwordMessage: new MessageLine('user-password-message'),
    close: h('button', { type: 'button', class: 'link-button', 'data-i18n': 'users.edit.close', 'data-testid': 'edit-close' }),
  };

  constructor(options: UsersViewOptions) {
    this.#root = options.root;
    this.#i18n = options.i18n;
    this.#currentUser = options.currentUser;
    this.#build();
    this.#i18n.onChange(() => this.#renderText());
    this.#renderText();
  }

  /** Shown: (re)load the list. */
  show(): void {
    void this.#load();
  }

  /** Signed out: forget everything (the next admin loads afresh). */
  reset(): void {
    this.#abort?.abort();
    this.#users = [];
    this.#state = 'idle';
    this.#editingId = null;
    this.#listMessage.set(null);
    this.#create.message.set(null);
    this.#create.form.reset();
    this.#renderList();
    this.#renderSide();
  }

  // ---- building -------------------------------------------------------------------------------

  #build(): void {
    const refresh = h('button', { type: 'button', 'data-i18n': 'users.refresh', 'data-testid': 'users-refresh' });
    refresh.addEventListener('click', () => void this.#load());
    const c = this.#create;
    c.form.append(
      h('h2', { 'data-i18n': 'users.create.title' }),
      field('new-username', 'users.field.username', c.username, 'users.field.usernameHint'),
      field('new-display-name', 'users.field.displayName', c.displayName),
      field('new-role', 'users.field.role', c.role),
      field('new-grids', 'users.field.grids', c.grids, 'users.field.gridsHint'),
      field('new-password', 'users.field.password', c.password, 'users.field.passwordHint'),
      c.message.el,
      h('div', { class: 'form-actions' }, c.submit),
    );
    c.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#submitCreate();
    });

    const e = this.#edit;
    e.form.append(
      field('edit-display-name', 'users.field.displayName', e.displayName),
      field('edit-role', 'users.field.role', e.role),
      field('edit-grids', 'users.field.grids', e.grids, 'users.field.gridsHint'),
      e.selfNote,
      e.message.el,
      h('div', { class: 'form-actions' }, e.save),
    );
    e.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.#submitEdit();
    });
    e.passwordForm.append(
      h('h3', { 'data-i18n': 'users.password.title' }),
      e.passwordUsername,
      field('edit-password', 'users.password.new', e.password, 'users.field.passwordHint'),
      e.passwordMessage.el,
      h('div', { class: 'form-actions' }, e.passwordSubmit),
    );
    e.passwordForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.#submitPassword();
    });
    e.close.addEventListener('click', () => this.#stopEditing());
    e.panel.append(h('div', { class: 'edit-head' }, e.title, e.close), e.form, e.passwordForm);

    this.#root.replaceChildren(
      h(
        'div',
        { class: 'admin-main' },
        h('header', { class: 'view-header' }, h('h1', { 'data-i18n': 'users.title' }), this.#count, h('span', { class: 'spacer' }), refresh),
        this.#listMessage.el,
        h('div', { class: 'table-wrap' }, this.#table),
      ),
      h('aside', { class: 'admin-side' }, c.form, e.panel),
    );
    this.#renderSide();
  }

  // ---- loading ----------------------------------------------------------------------------------

  async #load(): Promise<void> {
    this.#abort?.abort();
    const abort = new AbortController();
    this.#abort = abort;
    this.#state = this.#users.length > 0 ? 'ready' : 'loading';
    this.#renderList();
    try {
      this.#users = await fetchUsers(abort.signal);
      this.#state = 'ready';
      this.#loadError = null;
    } catch (err) {
      if (abort.signal.aborted) return;
      this.#state = 'failed';
      this.#loadError = err;
    }
    if (this.#editingId !== null && !this.#users.some((u) => u.id === this.#editingId)) this.#editingId = null;
    this.#renderList();
    this.#renderSide();
  }

  /** Puts a user the gateway returned into the list (after a create or an update). */
  #upsert(user: User): void {
    const i = this.#users.findIndex((u) => u.id === user.id);
    if (i >= 0) this.#users[i] = user;
    else this.#users = [...this.#users, user].sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
    this.#renderList();
  }

  // ---- actions ----------------------------------------------------------------------------------

  async #submitCreate(): Promise<void> {
    const c = this.#create;
    const username = c.username.value.trim();
    const displayName = c.displayName.value.trim();
    const role = c.role.value as Role;
    const grids = parseGrids(c.grids.value);
    const password = c.password.value;
    const invalid = this.#check({ username, displayName, role, grids, password });
    if (invalid) {
      c.message.set({ kind: 'error', text: invalid.text });
      c[invalid.field].focus();
      return;
    }
    c.submit.disabled = true;
    c.message.set(null);
    try {
      const user = await createUser({ username, displayName, role, grids, password });
      this.#upsert(user);
      c.form.reset();
      c.role.value = 'viewer';
      c.message.set({ kind: 'ok', text: () => this.#i18n.t('users.created', { name: user.username }) });
      c.username.focus();
    } catch (err) {
      c.message.set({ kind: 'error', text: () => describeError(this.#i18n, err) });
    } finally {
      c.submit.disabled = false;
    }
  }

  /** Why the input is not acceptable (translated when shown) and which field to fix; null if fine. */
  #check(input: { username?: string; displayName: string; role: Role; grids: string[]; password?: string }): Invalid | null {
    const t = this.#i18n.t.bind(this.#i18n);
    if (input.username !== undefined && !USERNAME.test(input.username)) return { field: 'username', text: () => t('users.invalid.username') };
    if (!input.displayName) return { field: 'displayName', text: () => t('users.invalid.displayName') };
    const badGrid = input.grids.find((g) => !GRID.test(g));
    if (badGrid !== undefined) return { field: 'grids', text: () => t('users.invalid.grid', { grid: badGrid }) };
    if (input.role === 'grid_worker' && input.grids.length === 0) return { field: 'grids', text: () => t('users.invalid.gridsNeeded') };
    if (input.password !== undefined && input.password.length < MIN_PASSWORD) return { field: 'password', text: () => t('users.invalid.password') };
    return null;
  }

  #startEditing(id: number): void {
    this.#editingId = id;
    const user = this.#users.find((u) => u.id === id);
    if (!user) return;
    const e = this.#edit;
    e.displayName.value = user.displayName;
    e.role.value = user.role;
    e.grids.value = user.grids.join(', ');
    e.password.value = '';
    e.passwordUsername.value = user.username;
    e.message.set(null);
    e.passwordMessage.set(null);
    this.#renderSide();
    this.#renderList();
    e.displayName.focus();
  }

  #stopEditing(): void {
    this.#editingId = null;
    this.#renderSide();
    this.#renderList();
  }

  #editing(): User | undefined {
    return this.#editingId === null ? undefined : this.#users.find((u) => u.id === this.#editingId);
  }

  async #submitEdit(): Promise<void> {
    const user = this.#editing();
    if (!user) return;
    const e = this.#edit;
    const displayName = e.displayName.value.trim();
    const role = e.role.value as Role;
    const grids = parseGrids(e.grids.value);
    const invalid = this.#check({ displayName, role, grids });
    if (invalid) {
      e.message.set({ kind: 'error', text: invalid.text });
      if (invalid.field === 'displayName' || invalid.field === 'grids') e[invalid.field].focus();
      return;
    }
    const patch: UserPatch = {};
    if (displayName !== user.displayName) patch.displayName = displayName;
    if (role !== user.role && !this.#isSelf(user)) patch.role = role;
    if (!sameList(grids, user.grids)) patch.grids = grids;
    if (Object.keys(patch).length === 0) {
      e.message.set({ kind: 'ok', text: () => this.#i18n.t('users.nothingChanged') });
      return;
    }
    await this.#patch(user, patch, e.save, e.message, (u) => this.#i18n.t('users.saved', { name: u.username }));
  }

  async #submitPassword(): Promise<void> {
    const user = this.#editing();
    if (!user) return;
    const e = this.#edit;
    const password = e.password.value;
    if (password.length < MIN_PASSWORD) {
      e.passwordMessage.set({ kind: 'error', text: () => this.#i18n.t('users.invalid.password') });
      e.password.focus();
      return;
    }
    const done = await this.#patch(user, { password }, e.passwordSubmit, e.passwordMessage, (u) =>
      this.#i18n.t('users.password.done', { name: u.username }),
    );
    if (done) e.password.value = '';
  }

  async #toggleDisabled(user: User, button: HTMLButtonElement): Promise<void> {
    const disabled = !user.disabled;
    if (disabled && !window.confirm(this.#i18n.t('users.confirmDisable', { name: `${user.displayName} (${user.username})` }))) return;
    await this.#patch(user, { disabled }, button, this.#listMessage, (u) =>
      this.#i18n.t(u.disabled ? 'users.disabledDone' : 'users.enabledDone', { name: u.username }),
    );
  }

  async #patch(user: User, patch: UserPatch, button: HTMLButtonElement, line: MessageLine, ok: (u: User) => string): Promise<boolean> {
    button.disabled = true;
    line.set(null);
    try {
      const updated = await updateUser(user.id, patch);
      this.#upsert(updated);
      line.set({ kind: 'ok', text: () => ok(updated) });
      if (updated.id === this.#editingId) this.#renderSide();
      return true;
    } catch (err) {
      line.set({ kind: 'error', text: () => describeError(this.#i18n, err) });
      return false;
    } finally {
      button.disabled = false;
    }
  }

  #isSelf(user: User): boolean {
    return this.#currentUser()?.id === user.id;
  }

  // ---- rendering --------------------------------------------------------------------------------

  #renderText(): void {
    this.#i18n.applyStatic(this.#root);
    for (const select of [this.#create.role, this.#edit.role]) {
      const value = select.value || 'viewer';
      select.replaceChildren(...ROLES.map((r) => h('option', { value: r }, this.#i18n.t(`role.${r}`))));
      select.value = value;
    }
    for (const line of [this.#listMessage, this.#create.message, this.#edit.message, this.#edit.passwordMessage]) line.render();
    this.#renderList();
    this.#renderSide();
  }

  #renderList(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    const cols: MessageKey[] = [
      'users.col.username',
      'users.col.displayName',
      'users.col.role',
      'users.col.grids',
      'users.col.status',
      'users.col.createdAt',
      'users.col.actions',
    ];
    this.#table.replaceChildren(h('thead', {}, h('tr', {}, ...cols.map((k) => h('th', { scope: 'col' }, t(k))))), this.#tbody);
    this.#count.textContent = this.#state === 'ready' ? t('users.count', { count: this.#users.length }) : '';
    this.#root.dataset.state = this.#state;
    if (this.#state === 'loading' || this.#state === 'failed') {
      const text = this.#state === 'loading' ? t('users.loading') : t('users.loadFailed', { message: describeError(this.#i18n, this.#loadError) });
      this.#tbody.replaceChildren(h('tr', {}, h('td', { colspan: String(cols.length), class: this.#state === 'failed' ? 'error-text' : 'muted' }, text)));
      return;
    }
    this.#tbody.replaceChildren(...this.#users.map((u) => this.#row(u)));
  }

  #row(u: User): HTMLTableRowElement {
    const t = this.#i18n.t.bind(this.#i18n);
    const self = this.#isSelf(u);
    const nameCell = h('td', {}, u.displayName);
    if (self) nameCell.append(' ', h('span', { class: 'tag' }, t('users.you')));
    const edit = h('button', { type: 'button', 'data-action': 'edit' }, t('users.edit'));
    edit.addEventListener('click', () => this.#startEditing(u.id));
    const actions = h('td', { class: 'actions' }, edit);
    if (!self) {
      const toggle = h('button', { type: 'button', 'data-action': u.disabled ? 'enable' : 'disable', class: u.disabled ? '' : 'danger' }, t(u.disabled ? 'users.enable' : 'users.disable'));
      toggle.addEventListener('click', () => void this.#toggleDisabled(u, toggle));
      actions.append(toggle);
    }
    return h(
      'tr',
      {
        'data-testid': 'user-row',
        'data-username': u.username,
        'data-role': u.role,
        'data-disabled': String(u.disabled),
        ...(u.id === this.#editingId ? { 'aria-selected': 'true' } : {}),
      },
      h('td', { class: 'mono' }, u.username),
      nameCell,
      h('td', {}, t(`role.${u.role}`)),
      h('td', { class: 'mono' }, u.grids.length > 0 ? u.grids.join(', ') : '—'),
      h('td', {}, h('span', { class: `pill ${u.disabled ? 'pill-off' : 'pill-on'}` }, t(u.disabled ? 'users.status.disabled' : 'users.status.active'))),
      h('td', { class: 'num' }, this.#i18n.dateTime(u.createdAt)),
      actions,
    );
  }

  #renderSide(): void {
    const user = this.#editing();
    const e = this.#edit;
    this.#create.form.hidden = user !== undefined;
    e.panel.hidden = user === undefined;
    if (!user) return;
    e.title.replaceChildren(this.#i18n.t('users.edit.title'), h('span', { class: 'edit-who' }, `${user.displayName} · ${user.username}`));
    const self = this.#isSelf(user);
    e.role.disabled = self;
    e.selfNote.hidden = !self;
  }
}

function field(id: string, labelKey: MessageKey, input: HTMLElement, hintKey?: MessageKey): HTMLElement {
  const wrap = h('div', { class: 'field' }, h('label', { for: id, 'data-i18n': labelKey }), input);
  if (hintKey) {
    const hintId = `${id}-hint`;
    wrap.append(h('small', { id: hintId, class: 'hint', 'data-i18n': hintKey }));
    input.setAttribute('aria-describedby', hintId);
  }
  return wrap;
}
