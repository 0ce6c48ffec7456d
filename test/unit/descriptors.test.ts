/**
 * gateway.mqtt.maxConnections as resolved from the open-file limit (gateway/src/broker/descriptors.ts).
 * The broker-level behaviour is in test/integration/broker-max-connections.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { openFileLimit, reserveFor, resolveMaxConnections } from '../../gateway/src/broker/descriptors.js';

const limits = (soft: string, hard = soft) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files
Max locked memory         8388608              8388608              bytes
`;

describe('open-file limit and the MQTT connection cap', () => {
  it('reads the soft limit from /proc/self/limits text', () => {
    expect(openFileLimit(limits('20000'))).toBe(20_000);
    expect(openFileLimit(limits('1024', '524288'))).toBe(1024);
    expect(openFileLimit(limits('unlimited'))).toBeUndefined();
    expect(openFileLimit('garbage')).toBeUndefined();
  });

  it('reads this process’s own limit on Linux', () => {
    if (process.platform !== 'linux') return;
    expect(openFileLimit()).toBeGreaterThan(0);
  });

  it("'auto' keeps a quarter of the limit, at most 1024, for everything else", () => {
    expect(reserveFor(20_000)).toBe(1024);
    expect(reserveFor(1024)).toBe(256);
    expect(resolveMaxConnections('auto', 20_000)).toEqual({ max: 18_976, fileLimit: 20_000 });
    expect(resolveMaxConnections('auto', 1_048_576).max).toBe(1_047_552);
    expect(resolveMaxConnections('auto', 1024).max).toBe(768);
    expect(resolveMaxConnections('auto', undefined).max).toBe(Number.POSITIVE_INFINITY);
  });

  it('takes an explicit value, and warns when it eats into the reserve', () => {
    expect(resolveMaxConnections(5000, 20_000)).toEqual({ max: 5000, fileLimit: 20_000 });
    const over = resolveMaxConnections(19_500, 20_000);
    expect(over.max).toBe(19_500);
    expect(over.warning).toMatch(/leaves fewer than 1024 of the process's 20000 descriptors/);
    expect(resolveMaxConnections(50_000, undefined)).toEqual({ max: 50_000, fileLimit: undefined });
  });
});
