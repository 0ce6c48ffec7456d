/**
 * Keeps docs/devices/camera-onvif.md honest: each ```xml example=<vendor> block must be exactly
 * what the simulator sends for the fire described there, and every topic and Data item name of
 * every vendor profile must appear on the page.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimCameraImpl } from '../../simulators/src/camera/camera.js';
import { DEFAULT_PTZ_LIMITS } from '../../simulators/src/camera/ptz.js';
import { ALARM_KINDS, CAMERA_VENDORS, MOTION_TOPIC, VENDOR_PROFILES } from '../../simulators/src/camera/vendors.js';

const doc = readFileSync(join(resolve(import.meta.dirname, '../..'), 'docs/devices/camera-onvif.md'), 'utf8');
const examples = new Map([...doc.matchAll(/```xml example=(\S+)\n([\s\S]*?)```/g)].map((m) => [m[1]!, m[2]!]));
const compact = (xml: string) => xml.replace(/>\s+</g, '><').trim();

describe('camera-onvif.md', () => {
  it('has an example notification for every vendor', () => {
    expect([...examples.keys()].sort()).toEqual([...CAMERA_VENDORS].sort());
  });

  for (const vendor of CAMERA_VENDORS) {
    it(`the ${vendor} example is what the simulator sends`, async () => {
      const cam = new SimCameraImpl(
        { id: 'cam-0042', headingDeg: 30, vendor },
        {
          now: () => Date.parse('2025-04-01T06:30:12.345Z'),
          seed: 1,
          defaultVendor: 'generic',
          ptzLimits: DEFAULT_PTZ_LIMITS,
          maxQueuedMessages: 10,
          maxSubscriptions: 1,
        },
      );
      const sub = cam.createSubscription(() => true, Infinity)!;
      await sub.pull(100, 0); // the Initialized states
      cam.raiseFire({ kind: 'fire', bearingDeg: 63.5, confidence: 0.87, temperatureC: 412 });
      const [message] = await sub.pull(100, 0);
      expect(compact(examples.get(vendor)!)).toBe(message!.xml);
    });
  }

  it('names every topic and item of every vendor profile', () => {
    for (const p of Object.values(VENDOR_PROFILES)) {
      for (const kind of ALARM_KINDS) {
        expect(doc).toContain(`\`${p.topics[kind].topic}\``);
        expect(doc).toContain(`\`${p.topics[kind].stateItem}\``);
        if (p.topics[kind].rule) expect(doc).toContain(`\`${p.topics[kind].rule}\``);
      }
      for (const item of [p.bearing.item, p.confidence.item, p.temperature.item]) expect(doc).toContain(`\`${item}\``);
      expect(doc).toContain(`\`${p.vendor}\``);
    }
    expect(doc).toContain(`\`${MOTION_TOPIC.topic}\``);
  });
});
