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
