/**
 * Users and sessions for the dashboard and the HTTP API. Passwords are scrypt hashes; a login
 * gives a random 256-bit session token, of which the store keeps only the SHA-256, so a copy of
 * the database cannot be replayed as a login. Tokens travel in an HttpOnly cookie (browsers) or
 * as `Authorization: Bearer` (integrations such as a district emergency platform).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../../../config/schema.js';
import { FailureLimiter } from '../broker/verifier.js';
import { verifySecret } from '../security/secrets.js';
import { isUniqueViolation } from '../store/errors.js';
import { ROLE_RANK, type OperationalStore, type Role, type User } from '../store/store.js';

export const SESSION_COOKIE = 'gs_session';

export interface LoginResult {
  user: User;
  token: string;
  expiresAt: number;
}

export type LoginFailure = 'bad_login' | 'rate_limited';

export interface AuthContext {
  config: GatewayConfig['auth'];
  store: OperationalStore;
  log: Logger;
  now?: () => number;
}

/** Expired sessions are deleted at start and then by the first sign-in of each hour. */
const PURGE_EVERY_MS = 3600_000;

const hashToken = (token: string) => createHash('sha256').update(token).digest('base64url');

/** Whether a user may do what needs `role` (ranks: viewer < grid worker < duty officer < admin). */
export function hasRole(user: Pick<User, 'role'>, role: Role): boolean {
  return ROLE_RANK[user.role] >= ROLE_RANK[role];
}

export class AuthService {
  readonly #ctx: AuthContext;
  readonly #now: () => number;
  // Guessing is slowed per username (10 failures in 5 min), and per address with a higher bar (a
  // whole command center may sit behind one NAT address, so it must not lock everyone out).
  readonly #userFailures: FailureLimiter;
  readonly #addressFailures: FailureLimiter;
  // A dummy hash, so an unknown username costs the same scrypt as a wrong password.
  #dummyHash: string | undefined;
  /** When expired sessions were last deleted (at start, then on a sign-in at most once an hour). */
  #lastPurge = Number.NEGATIVE_INFINITY;

  constructor(ctx: AuthContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
    this.#userFailures = new FailureLimiter({ maxFailures: 10, windowMs: 5 * 60_000, now: this.#now });
    this.#addressFailures = new FailureLimiter({ maxFailures: 100, windowMs: 5 * 60_000, now: this.#now });
  }

  /**
   * Creates the configured users that do not exist yet. Gateways starting together on one
   * database may both find a user missing: the one whose insert loses takes it as existing.
   */
  seed(): void {
    for (const u of this.#ctx.config.users) {
      if (this.#ctx.store.findUserByName(u.username)) continue;
      let user: User;
      try {
        user = this.#ctx.store.createUser({ username: u.username, displayName: u.displayName, role: u.role, grids: u.grids, passwordHash: u.passwordHash }, this.#now());
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        this.#ctx.log.debug({ username: u.username }, 'user from config created meanwhile by another gateway');
        continue;
      }
      this.#ctx.store.audit({ ts: this.#now(), actor: 'system', action: 'user.create', subject: user.username, detail: { role: user.role, source: 'config' } });
      this.#ctx.log.info({ username: user.username, role: user.role }, 'user created from config');
    }
    this.#dummyHash = this.#ctx.config.users[0]?.passwordHash;
    this.#purgeNow();
  }

  async login(username: string, password: string, address: string): Promise<LoginResult | LoginFailure> {
    const { store, log } = this.#ctx;
    const now = this.#now();
    if (this.#addressFailures.blocked(address) || this.#userFailures.blocked(username)) return 'rate_limited';
    const record = store.findUserByName(username);
    const ok = await verifySecret(Buffer.from(password, 'utf8'), record?.passwordHash ?? this.#dummyHash ?? '');
    if (!record || !ok || record.disabled) {
      this.#addressFailures.fail(address);
      this.#userFailures.fail(username);
      store.audit({ ts: now, actor: username.slice(0, 64), action: 'auth.login_failed', subject: null, detail: { address } });
      log.warn({ username: username.slice(0, 64), address }, 'login failed');
      return 'bad_login';
    }
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + this.#ctx.config.sessionHours * 3600_000;
    store.createSession({ tokenHash: hashToken(token), userId: record.id, createdAt: now, expiresAt });
    // Each sign-in leaves a row behind when it expires; without this the table only grows.
    if (now - this.#lastPurge >= PURGE_EVERY_MS) this.#purgeNow();
    store.audit({ ts: now, actor: record.username, action: 'auth.login', subject: null, detail: { address } });
    const { passwordHash: _omit, ...user } = record;
    return { user, token, expiresAt };
  }

  /** The user behind a session token, if the session is live and the user enabled. */
  authenticate(token: string): { user: User; expiresAt: number } | undefined {
    const session = this.#ctx.store.findSession(hashToken(token), this.#now());
    if (!session) return undefined;
    const user = this.#ctx.store.getUser(session.userId);
    if (!user || user.disabled) return undefined;
    return { user, expiresAt: session.expiresAt };
  }

  logout(token: string, user: User): void {
    this.#ctx.store.deleteSession(hashToken(token));
    this.#ctx.store.audit({ ts: this.#now(), actor: user.username, action: 'auth.logout', subject: null, detail: {} });
  }

  /** Deletes every expired session now; returns how many. */
  purgeExpired(): number {
    this.#lastPurge = this.#now();
    return this.#ctx.store.purgeExpiredSessions(this.#lastPurge);
  }

  /** purgeExpired for housekeeping: a failure (the store down) is logged, never thrown at a sign-in. */
  #purgeNow(): void {
    try {
      const purged = this.purgeExpired();
      if (purged > 0) this.#ctx.log.info({ purged }, 'expired sessions deleted');
    } catch (err) {
      this.#ctx.log.warn({ err }, 'could not delete expired sessions; trying again at a later sign-in');
    }
  }
}
