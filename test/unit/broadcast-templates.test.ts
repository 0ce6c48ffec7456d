/**
 * Template rendering: values from the request win over the provider's (the fire-danger service),
 * a variable without a value or a misspelt one is refused, the result fits what a pole speaks.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../gateway/src/errors.js';
import { BUILT_IN_TEMPLATES, fireDangerTemplateValues, renderTemplate, templateCatalogue, templateVariables } from '../../gateway/src/broadcast/templates.js';

const tpl = (id: string) => BUILT_IN_TEMPLATES.find((t) => t.id === id)!;
const refusal = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('BROADCAST_BAD_CONTENT');
    expect((err as ApiError).status).toBe(400);
    return (err as ApiError).message;
  }
  throw new Error('expected BROADCAST_BAD_CONTENT');
};

describe('built-in templates', () => {
  it('ship the routine reminder, the fire-danger warning and the evacuation order, in Chinese, with their variables declared', () => {
    expect(BUILT_IN_TEMPLATES.map((t) => [t.id, t.priority])).toEqual([
      ['routine-no-open-fire', 'routine'],
      ['fire-danger-warning', 'warning'],
      ['evacuation-order', 'emergency'],
    ]);
    for (const t of BUILT_IN_TEMPLATES) {
      expect(t.text).toMatch(/\p{Script=Han}/u);
      expect(t.variables.map((v) => v.name)).toEqual(templateVariables(t.text));
    }
    expect(templateVariables(tpl('fire-danger-warning').text)).toEqual(['fireDangerLevel', 'fireDangerName']);
    expect(templateVariables(tpl('evacuation-order').text)).toEqual(['area']);
  });
});

describe('renderTemplate', () => {
  it('fills in values from the provider, the request winning', () => {
    const provider = { fireDangerLevel: 4, fireDangerName: '高火险', unrelated: 'x' };
    expect(renderTemplate(tpl('fire-danger-warning'), {}, provider)).toBe(
      '森林火险预警：今天森林火险等级为4级，高火险。全面禁止野外用火，进山人员请勿携带火种，发现火情请立即拨打12119。',
    );
    expect(renderTemplate(tpl('fire-danger-warning'), { fireDangerLevel: 5, fireDangerName: '极高火险' }, provider)).toContain('等级为5级，极高火险。');
    expect(renderTemplate(tpl('evacuation-order'), { area: '茶山竹海景区北坡' })).toBe(
      '紧急通知：茶山竹海景区北坡发生山火，请立即按疏散路线撤离，听从现场工作人员指挥，不要围观，不要返回取物。',
    );
    expect(renderTemplate(tpl('routine-no-open-fire'))).toBe(tpl('routine-no-open-fire').text);
  });

  it('refuses a missing value, naming every missing variable', () => {
    expect(refusal(() => renderTemplate(tpl('fire-danger-warning')))).toBe('template "fire-danger-warning" needs a value for {fireDangerLevel}, {fireDangerName}');
    expect(refusal(() => renderTemplate(tpl('fire-danger-warning'), { fireDangerLevel: 3 }))).toBe('template "fire-danger-warning" needs a value for {fireDangerName}');
    expect(refusal(() => renderTemplate(tpl('evacuation-order'), { area: '  ' }))).toMatch(/needs a value for \{area\}/);
  });

  it('refuses a request value for a variable the template does not have (a typo)', () => {
    expect(refusal(() => renderTemplate(tpl('evacuation-order'), { aera: '北坡' }))).toBe('template "evacuation-order" has no variable "aera" (it uses: area)');
  });

  it('refuses values that would inject placeholders or line breaks, and results too long to speak', () => {
    expect(refusal(() => renderTemplate(tpl('evacuation-order'), { area: '{area}' }))).toMatch(/must not contain braces or line breaks/);
    expect(refusal(() => renderTemplate(tpl('evacuation-order'), { area: '北坡\n南坡' }))).toMatch(/must not contain braces/);
    const long = { id: 'long', title: 't', priority: 'routine' as const, text: '请注意：{a}{b}{c}{d}{e}', variables: [] };
    const v = '长'.repeat(100);
    expect(refusal(() => renderTemplate(long, { a: v, b: v, c: v, d: v, e: v }))).toMatch(/is 504 characters; a pole speaks at most 500/);
  });
});

describe('site templates', () => {
  it('add to the built-ins, and one with a built-in id replaces it', () => {
    const cat = templateCatalogue([
      { id: 'scenic-closing', title: '景区闭园', priority: 'routine', text: '{park}将于{time}闭园。', variables: { park: '景区名称' } },
      { id: 'evacuation-order', title: '疏散', priority: 'emergency', text: '请立即撤离{area}。', variables: {} },
    ]);
    expect([...cat.keys()]).toEqual(['routine-no-open-fire', 'fire-danger-warning', 'evacuation-order', 'scenic-closing']);
    expect(cat.get('scenic-closing')!.variables).toEqual([
      { name: 'park', description: '景区名称' },
      { name: 'time', description: '' },
    ]);
    expect(renderTemplate(cat.get('evacuation-order')!, { area: '北坡' })).toBe('请立即撤离北坡。');
  });
});

describe('fire danger values', () => {
  it('give the level and its name as the warning speaks it, or nothing when no level is known', () => {
    expect(fireDangerTemplateValues(4)).toEqual({ fireDangerLevel: 4, fireDangerName: '高火险' });
    expect(fireDangerTemplateValues(5)).toEqual({ fireDangerLevel: 5, fireDangerName: '极高火险' });
    expect(fireDangerTemplateValues(null)).toEqual({});
    expect(renderTemplate(tpl('fire-danger-warning'), {}, fireDangerTemplateValues(3))).toContain('森林火险等级为3级，较高火险。');
  });
});
