/**
 * Roles in the browser: what the signed-in user may see. The gateway enforces every rule on its
 * side (401/403); the page only leaves out what a role cannot use, so nobody is offered a button
 * that can only fail.
 *
 * Static markup opts in with `data-min-role="admin"` (or another role): a RoleGate takes such
 * elements out of the document for lesser roles (a comment stands in their place) and puts them
 * back when a user with the role signs in. Code that builds DOM asks `can(role, min)`.
 */
import type { Role } from '../../gateway/src/store/store.js';

export type { Role };

// Local copies of the gateway's role list and ranks (gateway/src/store/store.ts): importing the
// values would make the browser bundle depend on gateway code. The checks below keep them in step.
export const ROLES = ['viewer', 'grid_worker', 'duty_officer', 'admin'] as const satisfies readonly Role[];
const rolesAreComplete: Exclude<Role, (typeof ROLES)[number]> extends never ? true : false = true;
void rolesAreComplete;
const ROLE_RANK = { viewer: 1, grid_worker: 2, duty_officer: 3, admin: 4 } as const satisfies Record<Role, number>;

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Whether `role` may use what needs `min` (viewer < grid worker < duty officer < admin). No role: nothing. */
export function can(role: Role | null | undefined, min: Role): boolean {
  return role != null && ROLE_RANK[role] >= ROLE_RANK[min];
}

interface Gated {
  el: Element;
  min: Role;
  /** Holds the element's place in the document while it is taken out. */
  placeholder: Comment;
}

export class RoleGate {
  readonly #gated: Gated[] = [];
  readonly #known = new WeakSet<Element>();

  /** Registers every `[data-min-role]` element under `root` not registered yet. */
  register(root: ParentNode): void {
    for (const el of root.querySelectorAll('[data-min-role]')) {
      if (this.#known.has(el)) continue;
      this.#known.add(el);
      const value = el.getAttribute('data-min-role');
      if (!isRole(value)) console.warn(`data-min-role="${value}" is not a role; the element is shown to admins only`);
      const min: Role = isRole(value) ? value : 'admin';
      this.#gated.push({ el, min, placeholder: document.createComment(` needs role ${min} `) });
    }
  }

  /**
   * Leaves in the document exactly the gated elements `role` may use (null = signed out: none).
   * Returns the elements put back, which may need their text refreshed.
   */
  apply(role: Role | null): Element[] {
    const restored: Element[] = [];
    for (const g of this.#gated) {
      if (can(role, g.min)) {
        if (g.placeholder.parentNode) {
          g.placeholder.replaceWith(g.el);
          restored.push(g.el);
        }
      } else if (g.el.parentNode) {
        g.el.replaceWith(g.placeholder);
      }
    }
    return restored;
  }
}
