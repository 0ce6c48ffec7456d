/**
 * Sign-in, users and the audit log over HTTP, and `requireRole`, the guard every other route
 * declares. A request's session comes from the `gs_session` cookie or `Authorization: Bearer`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { AuthService, hasRole, SESSION_COOKIE } from '../auth/auth.js';
import { ApiError } from '../errors.js';
import { hashSecret } from '../security/secrets.js';
import { isUniqueViolation } from '../store/errors.js';
import { ROLES, type OperationalStore, type Role, type User } from '../store/store.js';

declare module 'fastify' {
  interface FastifyRequest {
    user: User | null;
    sessionToken: string | null;
  }
}

const Username = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$' });
const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));
const GridList = Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }), { maxItems: 1000 });
const Password = Type.String({ minLength: 8, maxLength: 200 });

const LoginBody = Type.Object({ username: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
const NewUserBody = Type.Object(
  { username: Username, displayName: Type.String({ minLength: 1, maxLength: 80 }), role: RoleSchema, grids: Type.Optional(GridList), password: Password },
  { additionalProperties: false },
);
const PatchUserBody = Type.Object(
  {
    displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 80 })),
    role: Type.Optional(RoleSchema),
    grids: Type.Optional(GridList),
    disabled: Type.Optional(Type.Boolean()),
    password: Type.Optional(Password),
  },
  { additionalProperties: false, minProperties: 1 },
);
const UserParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
const AuditQuery = Type.Object(
  {
    actor: Type.Optional(Type.String({ maxLength: 64 })),
    action: Type.Optional(Type.String({ maxLength: 64 })),
    from: Type.Optional(Type.Integer({ minimum: 0 })),
    to: Type.Optional(Type.Integer({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000, default: 200 })),
  },
  { additionalProperties: false },
);

function tokenOf(req: FastifyRequest): string | null {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim() || null;
  const cookie = req.headers.cookie;
  if (!cookie) return null;
  for (const part of cookie.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === SESSION_COOKIE) return decodeURIComponent(rest.join('='));
  }
  return null;
}

export type RequireRole = (role: Role) => preHandlerAsyncHookHandler;

export function registerAuth(app: FastifyInstance, ctx: { auth: AuthService; store: OperationalStore; secureCookies: boolean }): RequireRole {
  const { auth, store } = ctx;
  app.decorateRequest('user', null);
  app.decorateRequest('sessionToken', null);
  app.addHook('onRequest', async (req) => {
    const token = tokenOf(req);
    if (!token) return;
    const session = auth.authenticate(token);
    if (session) {
      req.user = session.user;
      req.sessionToken = token;
    }
  });

  const requireRole: RequireRole = (role) => async (req) => {
    if (!req.user) throw new ApiError('UNAUTHENTICATED');
    if (!hasRole(req.user, role)) throw new ApiError('FORBIDDEN', `this needs the ${role} role or above; you are ${req.user.role}`);
  };

  const setCookie = (reply: FastifyReply, value: string, maxAgeSec: number) => {
    reply.header(
      'set-cookie',
      `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${ctx.secureCookies ? '; Secure' : ''}`,
    );
  };

  app.post<{ Body: Static<typeof LoginBody> }>('/api/auth/login', { schema: { body: LoginBody } }, async (req, reply) => {
    const result = await auth.login(req.body.username, req.body.password, req.ip);
    if (result === 'rate_limited') throw new ApiError('TOO_MANY_ATTEMPTS');
    if (result === 'bad_login') throw new ApiError('BAD_LOGIN');
    setCookie(reply, result.token, Math.floor((result.expiresAt - Date.now()) / 1000));
    return { user: result.user, token: result.token, expiresAt: result.expiresAt };
  });

  app.post('/api/auth/logout', { preHandler: requireRole('viewer') }, async (req, reply) => {
    if (req.sessionToken && req.user) auth.logout(req.sessionToken, req.user);
    setCookie(reply, '', 0);
    return reply.status(204).send();
  });

  app.get('/api/auth/me', { preHandler: requireRole('viewer') }, async (req) => ({ user: req.user }));

  app.get('/api/users', { preHandler: requireRole('admin') }, async () => ({ users: store.listUsers() }));

  app.post<{ Body: Static<typeof NewUserBody> }>('/api/users', { preHandler: requireRole('admin'), schema: { body: NewUserBody } }, async (req, reply) => {
    const b = req.body;
    const exists = () => new ApiError('USER_EXISTS', `a user "${b.username}" exists`);
    if (store.findUserByName(b.username)) throw exists();
    const passwordHash = await hashSecret(b.password);
    let user: User;
    try {
      user = store.createUser({ username: b.username, displayName: b.displayName, role: b.role, grids: b.grids ?? [], passwordHash }, Date.now());
    } catch (err) {
      // Created meanwhile (another request, or another gateway on the same database).
      if (isUniqueViolation(err)) throw exists();
      throw err;
    }
    store.audit({ ts: Date.now(), actor: req.user!.username, action: 'user.create', subject: user.username, detail: { role: user.role, grids: user.grids } });
    return reply.status(201).send({ user });
  });

  app.patch<{ Params: Static<typeof UserParams>; Body: Static<typeof PatchUserBody> }>(
    '/api/users/:id',
    { preHandler: requireRole('admin'), schema: { params: UserParams, body: PatchUserBody } },
    async (req) => {
      const existing = store.getUser(req.params.id);
      if (!existing) throw new ApiError('USER_NOT_FOUND');
      const { password, ...rest } = req.body;
      const user = store.updateUser(existing.id, { ...rest, ...(password ? { passwordHash: await hashSecret(password) } : {}) })!;
      // A disabled user, a new password or a new role ends the user's sessions.
      if (req.body.disabled || password || (req.body.role && req.body.role !== existing.role)) store.deleteSessionsOf(user.id);
      store.audit({
        ts: Date.now(),
        actor: req.user!.username,
        action: 'user.update',
        subject: user.username,
        detail: { ...rest, ...(password ? { password: 'changed' } : {}) },
      });
      return { user };
    },
  );

  app.get<{ Querystring: Static<typeof AuditQuery> }>('/api/audit', { preHandler: requireRole('duty_officer'), schema: { querystring: AuditQuery } }, async (req) => {
    const q = req.query;
    return {
      entries: store.listAudit({
        limit: q.limit ?? 200,
        ...(q.actor ? { actor: q.actor } : {}),
        ...(q.action ? { action: q.action } : {}),
        ...(q.from !== undefined ? { from: q.from } : {}),
        ...(q.to !== undefined ? { to: q.to } : {}),
      }),
    };
  });

  return requireRole;
}
