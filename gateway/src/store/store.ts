/**
 * The operational store: users, sessions, the audit log, incidents and broadcasts. One interface,
 * so a PostgreSQL implementation can stand beside the SQLite default when several gateways share
 * state.
 */
import type { BroadcastStore } from './broadcasts.js';
import type { ClusterQueue } from './cluster.js';
import type { IncidentStore } from './incidents.js';

export const ROLES = ['viewer', 'grid_worker', 'duty_officer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What each role may do, by rank. A grid worker sees what a viewer sees (scoped to their grids
 * where a feature says so) and can act on incidents of their grids; a duty officer can broadcast
 * and dispatch; an admin manages users.
 */
export const ROLE_RANK: Record<Role, number> = { viewer: 1, grid_worker: 2, duty_officer: 3, admin: 4 };

export interface User {
  id: number;
  username: string;
  displayName: string;
  role: Role;
  /** Grids a grid worker covers (ids from the site GeoJSON); empty for other roles. */
  grids: string[];
  disabled: boolean;
  createdAt: number;
}

export interface UserRecord extends User {
  passwordHash: string;
}

export interface NewUser {
  username: string;
  displayName: string;
  role: Role;
  grids: string[];
  passwordHash: string;
}

export interface Session {
  tokenHash: string;
  userId: number;
  createdAt: number;
  expiresAt: number;
}

export interface AuditEntry {
  id: number;
  ts: number;
  /** Username, or `system` for the gateway's own decisions (escalations). */
  actor: string;
  action: string;
  subject: string | null;
  detail: Record<string, unknown>;
}

export interface AuditQuery {
  actor?: string;
  action?: string;
  from?: number;
  to?: number;
  limit: number;
}

export interface OperationalStore {
  // users
  findUserByName(username: string): UserRecord | undefined;
  getUser(id: number): User | undefined;
  listUsers(): User[];
  createUser(user: NewUser, now: number): User;
  updateUser(id: number, patch: Partial<Pick<UserRecord, 'displayName' | 'role' | 'grids' | 'disabled' | 'passwordHash'>>): User | undefined;
  // sessions
  createSession(session: Session): void;
  findSession(tokenHash: string, now: number): Session | undefined;
  deleteSession(tokenHash: string): void;
  deleteSessionsOf(userId: number): void;
  purgeExpiredSessions(now: number): number;
  // audit
  audit(entry: Omit<AuditEntry, 'id'>): AuditEntry;
  listAudit(q: AuditQuery): AuditEntry[];
  // capabilities
  readonly incidents: IncidentStore;
  readonly broadcasts: BroadcastStore;
  /** The queue to the cluster's leader: PostgreSQL only (a SQLite gateway is alone). */
  readonly cluster?: ClusterQueue;
  /** True when the store answers a trivial query (readiness). */
  ping(): boolean;
  /** Runs fn atomically (all of it or none) across every part of the store. */
  transaction<T>(fn: () => T): T;
  close(): void;
}
