/**
 * Our Modbus TCP server and client over real sockets: TCP segmentation (split and merged frames),
 * many connections, unit-id handling, and the client's typed errors and reconnects.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusError, ModbusTcpClient } from '../../edge-agent/src/modbus/client.js';
import { encodeFrame, ExceptionCode, MbapFramer, ModbusException, readRegistersPdu, type MbapFrame } from '../../edge-agent/src/modbus/mbap.js';
import { ModbusTcpServer, type RegisterBank } from '../../simulators/src/modbus/server.js';

/** Registers 0..99 holding their own address ×10; all writable. */
function bank(): RegisterBank & { regs: number[] } {
  const regs = Array.from({ length: 100 }, (_, i) => i * 10);
  return {
    regs,
    read(_t, address, quantity) {
      if (address + quantity > regs.length) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
      return regs.slice(address, address + quantity);
    },
    write(address, values) {
      if (address + values.length > regs.length) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
      values.forEach((v, i) => (regs[address + i] = v));
    },
  };
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function startServer(opts: Partial<ConstructorParameters<typeof ModbusTcpServer>[0]> = {}) {
  const b = bank();
  const server = new ModbusTcpServer({ unitId: 1, bank: b, ...opts });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  cleanup.push(() => server.close());
  return { server, port, bank: b };
}

function client(port: number, timeoutMs = 300): ModbusTcpClient {
  const c = new ModbusTcpClient({ host: '127.0.0.1', port, timeoutMs });
  cleanup.push(() => c.close());
  return c;
}

/** A raw TCP peer that collects MBAP frames. */
async function rawPeer(port: number): Promise<{ socket: Socket; frames: MbapFrame[]; waitFrames(n: number): Promise<MbapFrame[]> }> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  cleanup.push(async () => socket.destroy());
  const framer = new MbapFramer();
  const frames: MbapFrame[] = [];
  const waiters: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    frames.push(...framer.push(chunk));
    waiters.splice(0).forEach((w) => w());
  });
  const waitFrames = (n: number) =>
    new Promise<MbapFrame[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${frames.length} of ${n} frames`)), 2000);
      const check = () => {
        if (frames.length >= n) {
          clearTimeout(timer);
          resolve(frames.slice(0, n));
        } else waiters.push(check);
      };
      check();
    });
  return { socket, frames, waitFrames };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<ModbusError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModbusError);
    return err as ModbusError;
  }
  throw new Error('expected a rejection');
}

describe('Modbus TCP server over sockets', () => {
  it('reassembles a request sent one byte per TCP segment', async () => {
    const { port } = await startServer();
    const peer = await rawPeer(port);
    peer.socket.setNoDelay(true);
    const req = encodeFrame(0xbeef, 1, readRegistersPdu(0x03, 5, 2));
    for (const byte of req) {
      peer.socket.write(Buffer.from([byte]));
      await tick(2);
    }
    const [res] = await peer.waitFrames(1);
    expect(res).toMatchObject({ transactionId: 0xbeef, unitId: 1 });
    expect([...res!.pdu]).toEqual([0x03, 4, 0, 50, 0, 60]);
  });

  it('answers every request of several merged into one segment, in order', async () => {
    const { port } = await startServer();
    const peer = await rawPeer(port);
    const reqs = [1, 2, 3, 4, 5].map((tid) => encodeFrame(tid, 1, readRegistersPdu(0x04, tid, 1)));
    const merged = Buffer.concat(reqs);
    peer.socket.write(Buffer.concat([merged.subarray(0, 20)])); // 1 whole frame + 8 bytes of the next
    await tick(10);
    peer.socket.write(merged.subarray(20));
    const res = await peer.waitFrames(5);
    expect(res.map((f) => f.transactionId)).toEqual([1, 2, 3, 4, 5]);
    expect(res.map((f) => f.pdu.readUInt16BE(2))).toEqual([10, 20, 30, 40, 50]);
  });

  it('sends exception responses with the function code | 0x80', async () => {
    const { port } = await startServer();
    const peer = await rawPeer(port);
    peer.socket.write(encodeFrame(1, 1, Buffer.from([0x2b, 0x0e, 0x01, 0x00]))); // FC 43: not supported
    peer.socket.write(encodeFrame(2, 1, readRegistersPdu(0x03, 99, 2)));
    peer.socket.write(encodeFrame(3, 1, Buffer.from([0x03, 0, 0, 0, 200])));
    const res = await peer.waitFrames(3);
    expect(res.map((f) => [...f.pdu])).toEqual([
      [0xab, 0x01],
      [0x83, 0x02],
      [0x83, 0x03],
    ]);
  });

  it('closes a connection whose MBAP length is impossible', async () => {
    const { port, server } = await startServer();
    const peer = await rawPeer(port);
    const closed = new Promise((r) => peer.socket.once('close', r));
    peer.socket.write(Buffer.from([0, 1, 0, 0, 0x10, 0x00, 1, 3]));
    await closed;
    await tick(10);
    expect(server.connectionCount).toBe(0);
  });

  it('ignores frames whose protocol id is not Modbus', async () => {
    const { port } = await startServer();
    const peer = await rawPeer(port);
    const alien = encodeFrame(1, 1, readRegistersPdu(0x03, 0, 1));
    alien.writeUInt16BE(1, 2);
    peer.socket.write(Buffer.concat([alien, encodeFrame(2, 1, readRegistersPdu(0x03, 1, 1))]));
    const [res] = await peer.waitFrames(1);
    expect(res!.transactionId).toBe(2);
    await tick(50);
    expect(peer.frames).toHaveLength(1);
  });

  it('answers its unit id, 0 and 255; ignores others, or answers 0x0B if configured as a gateway', async () => {
    const { port } = await startServer({ unitId: 17 });
    const c = client(port, 150);
    for (const unit of [17, 0, 255]) expect(await c.readHoldingRegisters(unit, 1, 1)).toEqual([10]);
    expect((await rejection(c.readHoldingRegisters(16, 1, 1))).kind).toBe('timeout');

    const gw = await startServer({ unitId: 17, otherUnits: 'gateway_exception' });
    const e = await rejection(client(gw.port).readHoldingRegisters(16, 1, 1));
    expect(e.kind).toBe('exception');
    expect(e.exceptionCode).toBe(ExceptionCode.GATEWAY_TARGET_FAILED);
  });

  it('serves many clients at once, each with many requests in flight', async () => {
    const { port, server } = await startServer();
    const clients = Array.from({ length: 20 }, () => client(port));
    const results = await Promise.all(
      clients.map((c, ci) => Promise.all(Array.from({ length: 25 }, (_, i) => c.readHoldingRegisters(1, (ci + i) % 90, 3)))),
    );
    results.forEach((perClient, ci) =>
      perClient.forEach((values, i) => {
        const a = (ci + i) % 90;
        expect(values).toEqual([a * 10, a * 10 + 10, a * 10 + 20]);
      }),
    );
    expect(server.connectionCount).toBe(20);
    expect(server.requestCount).toBe(500);
  });
});

describe('Modbus TCP client', () => {
  it('reads holding and input registers and writes single and multiple registers', async () => {
    const { port, bank: b } = await startServer();
    const c = client(port);
    expect(await c.readHoldingRegisters(1, 0, 4)).toEqual([0, 10, 20, 30]);
    expect(await c.readInputRegisters(1, 98, 2)).toEqual([980, 990]);
    await c.writeSingleRegister(1, 3, 0xffff);
    await c.writeMultipleRegisters(1, 10, [1, 2, 3]);
    expect(b.regs.slice(3, 4)).toEqual([0xffff]);
    expect(b.regs.slice(10, 13)).toEqual([1, 2, 3]);
  });

  it('rejects with kind exception and the code', async () => {
    const { port } = await startServer();
    const e = await rejection(client(port).readHoldingRegisters(1, 99, 5));
    expect(e.kind).toBe('exception');
    expect(e.exceptionCode).toBe(2);
    expect(e.message).toMatch(/illegal data address/);
  });

  it('rejects with connection_refused when nothing listens', async () => {
    const { port, server } = await startServer();
    await server.close();
    const e = await rejection(client(port).readHoldingRegisters(1, 0, 1));
    expect(e.kind).toBe('connection_refused');
  });

  it('rejects with timeout when the server does not answer, then recovers', async () => {
    const { port, server } = await startServer();
    const c = client(port, 150);
    server.setMode('silent');
    const started = Date.now();
    const e = await rejection(c.readHoldingRegisters(1, 0, 1));
    expect(e.kind).toBe('timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(Date.now() - started).toBeLessThan(1000);
    server.setMode('serve');
    expect(await c.readHoldingRegisters(1, 1, 1)).toEqual([10]);
  });

  it('rejects with protocol when the peer is not a Modbus server', async () => {
    // e.g. a ledger row pointing at the gateway's web page instead of its Modbus port
    const web: Server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => web.close(r)));
    const c = client((web.address() as { port: number }).port);
    const e = await rejection(c.readHoldingRegisters(1, 0, 1));
    expect(e.kind).toBe('protocol');
    expect(e.message).toMatch(/MBAP length/);
  });

  it('rejects with connection_closed when the server drops the connection, and reconnects next time', async () => {
    const { port, server } = await startServer();
    const c = client(port);
    expect(await c.readHoldingRegisters(1, 0, 1)).toEqual([0]);
    server.setMode('silent');
    const pending = rejection(c.readHoldingRegisters(1, 0, 1));
    await tick(20);
    server.setMode('drop');
    expect((await pending).kind).toBe('connection_closed');
    expect((await rejection(c.readHoldingRegisters(1, 0, 1))).kind).toBe('connection_closed'); // accepted, then closed
    server.setMode('serve');
    expect(await c.readHoldingRegisters(1, 2, 1)).toEqual([20]);
  });

  it('drops a late answer to a timed-out request and keeps matching by transaction id', async () => {
    // Answers carry the low byte of their transaction id; the first request is answered 300 ms late.
    let first = true;
    let connections = 0;
    const slow: Server = createServer((socket) => {
      connections++;
      const framer = new MbapFramer();
      socket.on('data', (chunk: Buffer) => {
        for (const f of framer.push(chunk)) {
          const answer = encodeFrame(f.transactionId, f.unitId, Buffer.from([0x03, 2, 0, f.transactionId & 0xff]));
          if (first) {
            first = false;
            setTimeout(() => socket.write(answer), 300);
          } else socket.write(answer);
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => slow.close(r)));
    const c = client((slow.address() as { port: number }).port, 100);
    const late = rejection(c.readHoldingRegisters(1, 0, 1));
    const [prompt] = await c.readHoldingRegisters(1, 0, 1);
    expect((await late).kind).toBe('timeout');
    await tick(250); // the late answer to the first request arrives now, on the same connection
    const [next] = await c.readHoldingRegisters(1, 0, 1);
    expect(next).toBe((prompt! + 1) & 0xff); // its own answer, not the stale one
    expect(connections).toBe(1); // answers kept flowing, so the connection was kept
  });

  it('drops the connection after a timeout with nothing received, and reconnects', async () => {
    const { port, server } = await startServer();
    const c = client(port, 100);
    expect(await c.readHoldingRegisters(1, 0, 1)).toEqual([0]);
    server.setMode('silent');
    expect((await rejection(c.readHoldingRegisters(1, 0, 1))).kind).toBe('timeout');
    await tick(20);
    expect(server.connectionCount).toBe(0);
    server.setMode('serve');
    expect(await c.readHoldingRegisters(1, 3, 1)).toEqual([30]);
  });

  it('close() fails requests in flight with client_closed and later calls too', async () => {
    const { port, server } = await startServer();
    const c = client(port);
    server.setMode('silent');
    const pending = rejection(c.readHoldingRegisters(1, 0, 1));
    await tick(20);
    await c.close();
    expect((await pending).kind).toBe('client_closed');
    expect((await rejection(c.readHoldingRegisters(1, 0, 1))).kind).toBe('client_closed');
    await tick(20);
    expect(server.connectionCount).toBe(0);
  });
});
