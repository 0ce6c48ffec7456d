/**
 * The broker ACL as pure rules: principal + ledger -> may publish / subscribe / leave a will.
 * (The same rules over real sockets: test/integration/broker-acl.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { clientIdMatches, mayPublish, mayPublishParsed, maySubscribe, mayWill, type DeviceDirectory, type Principal } from '../../gateway/src/broker/acl.js';
import { parseTopic, topics } from '../../protocol/topics.js';

const ledger = new Map([
  ['tank-a1', { agent: 'agent-a' }],
  ['cam-a2', { agent: 'agent-a' }],
  ['tank-b1', { agent: 'agent-b' }],
]);
const devices: DeviceDirectory = { get: (id) => ledger.get(id), views: () => [...ledger.values()] };
const agentA: Principal = { kind: 'agent', username: 'agent-a', hash: 'h' };
const deviceB1: Principal = { kind: 'device', username: 'tank-b1', hash: 'h' };
const dev: Principal = { kind: 'dev' };

describe('publish', () => {
  it('lets an agent publish upstream only for the devices the ledger gives it, and its own state', () => {
    for (const channel of ['telemetry', 'event', 'state', 'ack'] as const) {
      expect(mayPublish(agentA, topics[channel]('tank-a1'), devices), channel).toBe(true);
      expect(mayPublish(agentA, topics[channel]('cam-a2'), devices), channel).toBe(true);
      expect(mayPublish(agentA, topics[channel]('tank-b1'), devices), channel).toBe(false);
      expect(mayPublish(agentA, topics[channel]('not-in-ledger'), devices), channel).toBe(false);
    }
    expect(mayPublish(agentA, topics.cmd('tank-a1'), devices)).toBe(false);
    expect(mayPublish(agentA, topics.agentState('agent-a'), devices)).toBe(true);
    expect(mayPublish(agentA, topics.agentState('agent-b'), devices)).toBe(false);
    for (const other of ['gs/v1/devices/tank-a1/telemetry/extra', 'gs/v2/devices/tank-a1/telemetry', 'tools/anything', 'gs/v1/devices/+/telemetry', '']) {
      expect(mayPublish(agentA, other, devices), other).toBe(false);
    }
  });

  it('decides the same on a topic the broker parsed once for the ACL and ingest (mayPublishParsed)', () => {
    const cases = [
      topics.telemetry('tank-a1'),
      topics.telemetry('tank-b1'),
      topics.cmd('tank-a1'),
      topics.agentState('agent-a'),
      topics.agentState('agent-b'),
      'gs/v1/devices/tank-a1/telemetry/extra',
      'tools/anything',
    ];
    for (const p of [agentA, deviceB1, dev]) {
      for (const topic of cases) expect(mayPublishParsed(p, parseTopic(topic), devices), `${p.kind} ${topic}`).toBe(mayPublish(p, topic, devices));
    }
    // Not one of our topics: only the development principal may publish there.
    expect(mayPublishParsed(agentA, undefined, devices)).toBe(false);
    expect(mayPublishParsed(dev, undefined, devices)).toBe(true);
  });

  it('lets a device publish only on its own upstream topics', () => {
    expect(mayPublish(deviceB1, topics.telemetry('tank-b1'), devices)).toBe(true);
    expect(mayPublish(deviceB1, topics.state('tank-b1'), devices)).toBe(true);
    expect(mayPublish(deviceB1, topics.telemetry('tank-a1'), devices)).toBe(false);
    expect(mayPublish(deviceB1, topics.cmd('tank-b1'), devices)).toBe(false);
    expect(mayPublish(deviceB1, topics.agentState('tank-b1'), devices)).toBe(false);
    // A device principal named like an agent gains nothing from the agent's devices.
    const deviceNamedAgent: Principal = { kind: 'device', username: 'agent-a', hash: 'h' };
    expect(mayPublish(deviceNamedAgent, topics.telemetry('tank-a1'), devices)).toBe(false);
    expect(mayPublish(deviceNamedAgent, topics.agentState('agent-a'), devices)).toBe(false);
  });

  it('lets the development principal publish anything', () => {
    expect(mayPublish(dev, topics.telemetry('tank-b1'), devices)).toBe(true);
    expect(mayPublish(dev, 'tools/anything', devices)).toBe(true);
  });
});

describe('subscribe', () => {
  it('allows exact command topics of own devices and refuses every wildcard', () => {
    expect(maySubscribe(agentA, topics.cmd('tank-a1'), devices)).toBe(true);
    expect(maySubscribe(agentA, topics.cmd('tank-b1'), devices)).toBe(false);
    expect(maySubscribe(agentA, topics.telemetry('tank-a1'), devices)).toBe(false);
    for (const filter of ['gs/v1/devices/+/cmd', 'gs/v1/#', '#', 'gs/v1/devices/tank-a1/+', '$share/g/gs/v1/devices/tank-a1/cmd']) {
      expect(maySubscribe(agentA, filter, devices), filter).toBe(false);
    }
    expect(maySubscribe(deviceB1, topics.cmd('tank-b1'), devices)).toBe(true);
    expect(maySubscribe(deviceB1, topics.cmd('tank-a1'), devices)).toBe(false);
    expect(maySubscribe(dev, '#', devices)).toBe(true);
  });
});

describe('will and client id', () => {
  it('accepts a will only on the principal own state topic', () => {
    expect(mayWill(agentA, topics.agentState('agent-a'))).toBe(true);
    expect(mayWill(agentA, topics.agentState('agent-b'))).toBe(false);
    expect(mayWill(agentA, topics.state('tank-a1'))).toBe(false);
    expect(mayWill(deviceB1, topics.state('tank-b1'))).toBe(true);
    expect(mayWill(deviceB1, topics.telemetry('tank-b1'))).toBe(false);
    expect(mayWill(dev, 'anything')).toBe(true);
  });

  it('binds the client id to the username, with ":" for extra connections', () => {
    expect(clientIdMatches('agent-a', 'agent-a')).toBe(true);
    expect(clientIdMatches('agent-a', 'agent-a:uplink-2')).toBe(true);
    expect(clientIdMatches('agent-a', 'agent-ab')).toBe(false);
    expect(clientIdMatches('agent-a', 'agent-b')).toBe(false);
    expect(clientIdMatches('agent-a', '')).toBe(false);
  });
});
