/**
 * Broadcast templates: texts with `{variable}` placeholders that the gateway fills in before the
 * poles speak them, so the evening's fire-danger warning says the level of the day. Values come
 * from the request and from a provider (the fire-danger service supplies the current level); the
 * request wins. A variable left without a value is an error, never an empty gap in a warning.
 */
import type { BroadcastPriority, BroadcastTemplateView } from '../../../protocol/broadcasts.js';
import { MAX_TEXT_CHARS } from '../../../protocol/broadcasts.js';
import { FIRE_DANGER_LEVELS } from '../alerts/fire-danger.js';
import { ApiError } from '../errors.js';

export type TemplateValues = Record<string, string | number>;
/** Current values for template variables (e.g. today's fire danger level); may be async. */
export type TemplateValuesProvider = () => TemplateValues | Promise<TemplateValues>;

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9_]{0,39})\}/g;

/**
 * Built in, Chinese first (the poles speak Mandarin). Fire danger levels follow QX/T 77-2007:
 * 一级 低火险 … 五级 极高火险; 12119 is the national forest-fire reporting number.
 */
export const BUILT_IN_TEMPLATES: readonly BroadcastTemplateView[] = [
  {
    id: 'routine-no-open-fire',
    title: '森林防火提醒',
    priority: 'routine',
    text: '森林防火，人人有责。进山请勿携带火种，严禁野外吸烟、烧纸祭祀和燃放烟花爆竹。发现火情请立即拨打12119。',
    variables: [],
  },
  {
    id: 'fire-danger-warning',
    title: '森林火险预警',
    priority: 'warning',
    text: '森林火险预警：今天森林火险等级为{fireDangerLevel}级，{fireDangerName}。全面禁止野外用火，进山人员请勿携带火种，发现火情请立即拨打12119。',
    variables: [
      { name: 'fireDangerLevel', description: '火险等级 1–5' },
      { name: 'fireDangerName', description: '火险等级名称，如 高火险、极高火险' },
    ],
  },
  {
    id: 'evacuation-order',
    title: '紧急疏散令',
    priority: 'emergency',
    text: '紧急通知：{area}发生山火，请立即按疏散路线撤离，听从现场工作人员指挥，不要围观，不要返回取物。',
    variables: [{ name: 'area', description: '起火地点或受威胁区域，如 茶山竹海景区北坡' }],
  },
];

/** Variable names in a template text, in order of first use. */
export function templateVariables(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]!))];
}

export interface SiteTemplate {
  id: string;
  title: string;
  priority: BroadcastPriority;
  text: string;
  variables: Record<string, string>;
}

/** Built-ins plus the site's own (a site template with a built-in's id replaces it). */
export function templateCatalogue(site: readonly SiteTemplate[]): Map<string, BroadcastTemplateView> {
  const out = new Map<string, BroadcastTemplateView>(BUILT_IN_TEMPLATES.map((t) => [t.id, t]));
  for (const t of site) {
    out.set(t.id, {
      id: t.id,
      title: t.title,
      priority: t.priority,
      text: t.text,
      variables: templateVariables(t.text).map((name) => ({ name, description: t.variables[name] ?? '' })),
    });
  }
  return out;
}

/**
 * Fills a template in. Request values must name variables the template has (a typo such as
 * `aera` is an error, not silently ignored); provider values may hold more than it needs.
 */
export function renderTemplate(template: BroadcastTemplateView, requestValues: TemplateValues = {}, providerValues: TemplateValues = {}): string {
  const names = templateVariables(template.text);
  const unknown = Object.keys(requestValues).filter((k) => !names.includes(k));
  if (unknown.length > 0) {
    throw new ApiError(
      'BROADCAST_BAD_CONTENT',
      `template "${template.id}" has no variable ${unknown.map((k) => `"${k}"`).join(', ')} (it uses: ${names.length ? names.join(', ') : 'none'})`,
    );
  }
  const value = (name: string): string | undefined => {
    const v = Object.hasOwn(requestValues, name) ? requestValues[name] : Object.hasOwn(providerValues, name) ? providerValues[name] : undefined;
    if (v === undefined || v === null) return undefined;
    const s = String(v).trim();
    return s === '' ? undefined : s;
  };
  const missing = names.filter((n) => value(n) === undefined);
  if (missing.length > 0) {
    throw new ApiError('BROADCAST_BAD_CONTENT', `template "${template.id}" needs a value for ${missing.map((n) => `{${n}}`).join(', ')}`);
  }
  for (const n of names) {
    // A value must not smuggle in another placeholder or break the text the pole speaks.
    if (/[{}\n\r]/.test(value(n)!)) throw new ApiError('BROADCAST_BAD_CONTENT', `the value for {${n}} must not contain braces or line breaks`);
  }
  const text = template.text.replace(PLACEHOLDER, (_m, n: string) => value(n)!);
  if ([...text].length > MAX_TEXT_CHARS) {
    throw new ApiError('BROADCAST_BAD_CONTENT', `template "${template.id}" filled in is ${[...text].length} characters; a pole speaks at most ${MAX_TEXT_CHARS}`);
  }
  return text;
}

/**
 * Template values from the fire danger level in force (the alerts' fire-danger service): the level
 * and its name as the warning speaks it (四级 高火险 → `4`, `高火险`). None when no level is known,
 * so a fire-danger warning then needs the values in the request.
 */
export function fireDangerTemplateValues(level: number | null): TemplateValues {
  const entry = FIRE_DANGER_LEVELS.find((l) => l.level === level);
  if (!entry) return {};
  return { fireDangerLevel: entry.level, fireDangerName: entry.zh.split(' ').at(-1)! };
}
