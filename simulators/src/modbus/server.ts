/**
 * A small Modbus TCP server (node:net, no third-party Modbus code): function codes 03, 04, 06 and
 * 16 over one register bank. It backs the water-tank simulators and lives beside the client
 * because both speak the same framing (mbap.ts).
 *
 * Unit id: the server answers its own unit id, and also 0 and 255. Modbus/TCP says a device
 * addressed directly by IP should be sent 255 (or 0) because the unit id is meaningless to it;
 * most native TCP transmitters and RS485 gateways in "single slave" mode answer both. Any other
 * unit id gets no answer by default, like a serial slave that is not there (the client times out);
 * `otherUnits: 'gateway_exception'` answers exception 0x0B instead, as gateways configured for it do.
 */
import { createServer, type Server, type Socket } from 'node:net';
import {
  encodeFrame,
  exceptionPdu,
  ExceptionCode,
  FunctionCode,
  MAX_READ_REGISTERS,
  MAX_WRITE_REGISTERS,
  MbapFramer,
  ModbusException,
} from '../../../edge-agent/src/modbus/mbap.js';

export type RegisterTable = 'holding' | 'input';

/** The device side of the server. Methods throw ModbusException to send an exception response. */
export interface RegisterBank {
  read(table: RegisterTable, address: number, quantity: number): readonly number[];
  write(address: number, values: readonly number[]): void;
}

/**
 * Answers one request PDU with a response PDU (normal or exception). Pure apart from the bank,
 * so the protocol rules are unit-tested without sockets.
 */
export function handleRequestPdu(bank: RegisterBank, pdu: Buffer): Buffer {
  const fc = pdu.readUInt8(0);
  try {
    switch (fc) {
      case FunctionCode.READ_HOLDING_REGISTERS:
      case FunctionCode.READ_INPUT_REGISTERS: {
        if (pdu.length !== 5) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, 'request length');
        const address = pdu.readUInt16BE(1);
        const quantity = pdu.readUInt16BE(3);
        if (quantity < 1 || quantity > MAX_READ_REGISTERS) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, `quantity ${quantity}`);
        if (address + quantity > 0x10000) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
        const values = bank.read(fc === FunctionCode.READ_HOLDING_REGISTERS ? 'holding' : 'input', address, quantity);
        if (values.length !== quantity) throw new ModbusException(ExceptionCode.SERVER_DEVICE_FAILURE, 'bank returned the wrong count');
        const out = Buffer.allocUnsafe(2 + 2 * quantity);
        out.writeUInt8(fc, 0);
        out.writeUInt8(2 * quantity, 1);
        values.forEach((v, i) => out.writeUInt16BE(v & 0xffff, 2 + 2 * i));
        return out;
      }
      case FunctionCode.WRITE_SINGLE_REGISTER: {
        if (pdu.length !== 5) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, 'request length');
        bank.write(pdu.readUInt16BE(1), [pdu.readUInt16BE(3)]);
        return Buffer.from(pdu); // the normal response echoes the request
      }
      case FunctionCode.WRITE_MULTIPLE_REGISTERS: {
        if (pdu.length < 6) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, 'request length');
        const address = pdu.readUInt16BE(1);
        const quantity = pdu.readUInt16BE(3);
        const byteCount = pdu.readUInt8(5);
        if (quantity < 1 || quantity > MAX_WRITE_REGISTERS || byteCount !== 2 * quantity || pdu.length !== 6 + byteCount) {
          throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, `quantity ${quantity}, byte count ${byteCount}`);
        }
        if (address + quantity > 0x10000) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
        const values: number[] = [];
        for (let i = 0; i < quantity; i++) values.push(pdu.readUInt16BE(6 + 2 * i));
        bank.write(address, values);
        return pdu.subarray(0, 5);
      }
      default:
        throw new ModbusException(ExceptionCode.ILLEGAL_FUNCTION);
    }
  } catch (err) {
    const code = err instanceof ModbusException ? err.exceptionCode : ExceptionCode.SERVER_DEVICE_FAILURE;
    return exceptionPdu(fc, code);
  }
}

/** serve: normal; silent: connections stay open but nothing is answered; drop: every connection is closed. */
export type ModbusServerMode = 'serve' | 'silent' | 'drop';

export interface ModbusTcpServerOptions {
  unitId: number;
  bank: RegisterBank;
  /** What to do with requests for another unit id (see the header comment). Default 'ignore'. */
  otherUnits?: 'ignore' | 'gateway_exception';
  /** Connections beyond this are closed at once (real gateways allow 4–16). Default 64. */
  maxConnections?: number;
  /** Close a connection idle this long; 0 = never (default). */
  idleTimeoutMs?: number;
}

export class ModbusTcpServer {
  readonly #opts: Required<ModbusTcpServerOptions>;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #mode: ModbusServerMode = 'serve';
  #requests = 0;

  constructor(opts: ModbusTcpServerOptions) {
    if (!Number.isInteger(opts.unitId) || opts.unitId < 0 || opts.unitId > 255) throw new RangeError(`unit id ${opts.unitId}`);
    this.#opts = { otherUnits: 'ignore', maxConnections: 64, idleTimeoutMs: 0, ...opts };
  }

  get mode(): ModbusServerMode {
    return this.#mode;
  }
  get connectionCount(): number {
    return this.#sockets.size;
  }
  /** Requests answered (normal or exception) since start. */
  get requestCount(): number {
    return this.#requests;
  }

  setMode(mode: ModbusServerMode): void {
    this.#mode = mode;
    if (mode === 'drop') for (const s of this.#sockets) s.destroy();
  }

  /** Starts listening; `port: 0` picks a free port. Resolves with the bound port. */
  listen(opts: { host?: string; port?: number } = {}): Promise<number> {
    if (this.#server) return Promise.reject(new Error('already listening'));
    const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 502 }, () => {
        server.off('error', reject);
        server.on('error', () => undefined); // after bind, accept errors (EMFILE…) must not crash the process
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  #accept(socket: Socket): void {
    socket.on('error', () => undefined); // resets from clients are routine
    if (this.#mode === 'drop' || this.#sockets.size >= this.#opts.maxConnections) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (this.#opts.idleTimeoutMs > 0) socket.setTimeout(this.#opts.idleTimeoutMs, () => socket.destroy());
    const framer = new MbapFramer();
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = framer.push(chunk);
      } catch {
        socket.destroy(); // no delimiter to resynchronise on
        return;
      }
      for (const frame of frames) {
        if (this.#mode !== 'serve') continue;
        if (frame.protocolId !== 0) continue; // not Modbus: discarded, as the spec says
        const own = frame.unitId === this.#opts.unitId || frame.unitId === 0 || frame.unitId === 255;
        let response: Buffer;
        if (own) response = handleRequestPdu(this.#opts.bank, frame.pdu);
        else if (this.#opts.otherUnits === 'gateway_exception') response = exceptionPdu(frame.pdu.readUInt8(0), ExceptionCode.GATEWAY_TARGET_FAILED);
        else continue;
        this.#requests++;
        if (!socket.destroyed) socket.write(encodeFrame(frame.transactionId, frame.unitId, response));
      }
    });
  }
}
