/**
 * The ingress gate's order and pace (gateway/src/broker/ingress-gate.ts), with stand-ins for
 * aedes' connections: past the cap, readable connections wait; below it they are read oldest
 * first, a slice (cap/8 publishes) per event-loop turn, so other sockets get polled in between.
 * The broker-level test (test/integration/ingress-gate.test.ts) runs it under real MQTT load.
 */
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { IngressGate } from '../../gateway/src/broker/ingress-gate.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A connection whose every read takes `perRead` publishes into the wait (as aedes' would). */
function connection(gate: IngressGate, name: string, perRead: number, reads: string[]) {
  const socket = new EventEmitter();
  const client = {
    _nextBatch: () => {
      reads.push(name);
      for (let i = 0; i < perRead; i++) gate.enter();
    },
  };
  socket.on('readable', client._nextBatch);
  gate.attach(socket as unknown as Readable, client);
  return socket;
}

describe('ingress gate', () => {
  it('reads deferred connections oldest first, one slice per turn, up to the cap', async () => {
    const gate = new IngressGate(80); // slice: 10 publishes
    const reads: string[] = [];
    const conns = Array.from({ length: 20 }, (_, i) => connection(gate, `c${i}`, 5, reads));
    for (let i = 0; i < 80; i++) gate.enter(); // at the cap
    for (const c of conns) c.emit('readable');
    expect(reads).toEqual([]);
    expect(gate.deferred).toBe(20);

    for (let i = 0; i < 80; i++) gate.leave(); // a commit answers them all
    expect(reads).toEqual([]); // not in the middle of the PUBACKs
    await turn();
    expect(reads).toEqual(['c0', 'c1']); // one slice: 10 publishes
    // A connection that becomes readable now queues behind the deferred ones.
    const late = connection(gate, 'late', 5, reads);
    late.emit('readable');
    expect(reads).toEqual(['c0', 'c1']);
    for (let t = 0; t < 10; t++) await turn();
    // 16 connections x 5 = the cap of 80: the rest wait for the next commit.
    expect(reads).toEqual(Array.from({ length: 16 }, (_, i) => `c${i}`));
    expect(gate.waiting).toBe(80);
    expect(gate.deferred).toBe(5);

    for (let i = 0; i < 80; i++) gate.leave();
    for (let t = 0; t < 10; t++) await turn();
    expect(reads.slice(16)).toEqual(['c16', 'c17', 'c18', 'c19', 'late']);
    expect(gate.deferred).toBe(0);
  });

  it('reads at once while under the cap and nothing is deferred', () => {
    const gate = new IngressGate(100);
    const reads: string[] = [];
    connection(gate, 'a', 3, reads).emit('readable');
    connection(gate, 'b', 3, reads).emit('readable');
    expect(reads).toEqual(['a', 'b']);
    expect(gate.waiting).toBe(6);
  });

  it('skips a deferred connection that closed, and does not count it', async () => {
    const gate = new IngressGate(16); // slice: 2 publishes
    const reads: string[] = [];
    const conns = ['a', 'b', 'c'].map((n) => connection(gate, n, 1, reads));
    for (let i = 0; i < 16; i++) gate.enter();
    for (const c of conns) c.emit('readable');
    conns[1]!.emit('readable'); // readable again while queued: still one entry
    expect(gate.deferred).toBe(3);
    conns[1]!.emit('close');
    expect(gate.deferred).toBe(2);
    for (let i = 0; i < 16; i++) gate.leave();
    for (let t = 0; t < 3; t++) await turn();
    expect(reads).toEqual(['a', 'c']);
    expect(gate.deferred).toBe(0);
  });

  it('keeps the order over many rounds (thousands of deferrals through the queue)', async () => {
    const gate = new IngressGate(8); // slice: 1 publish
    const reads: string[] = [];
    const conns = Array.from({ length: 50 }, (_, i) => connection(gate, `c${i}`, 1, reads));
    const expected: string[] = [];
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 8 - gate.waiting; i++) gate.enter(); // at the cap
      conns.forEach((c) => c.emit('readable'));
      expected.push(...conns.map((_, i) => `c${i}`));
      // Answer whatever is waiting, a turn at a time, until every deferred connection was read.
      while (gate.deferred > 0) {
        while (gate.waiting > 0) gate.leave();
        await turn();
      }
    }
    expect(reads).toEqual(expected);
  });
});
