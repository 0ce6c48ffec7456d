/**
 * Modbus TCP client (node:net, no third-party Modbus code). One TCP connection per server,
 * opened on first use and reopened on the next request after any failure; requests may overlap
 * and are matched to responses by transaction id. Every failure is a ModbusError with a stable
 * `kind`, so callers can tell "the device answered no" from "nothing answered".
 */
import { createConnection, type Socket } from 'node:net';
import {
  encodeFrame,
  exceptionName,
  FunctionCode,
  MbapFramer,
  parseReadRegistersResponse,
  readRegistersPdu,
  writeMultipleRegistersPdu,
  writeSingleRegisterPdu,
} from './mbap.js';

export type ModbusErrorKind =
  /** no response within the request timeout (includes a connect that hangs) */
  | 'timeout'
  /** the server answered with an exception response; see `exceptionCode` */
  | 'exception'
  /** TCP connection refused (nothing listening) */
  | 'connection_refused'
  /** the server closed or reset the connection before answering */
  | 'connection_closed'
  /** any other socket error (unreachable host, DNS, …); see `cause` */
  | 'connection_error'
  /** the response was not valid Modbus for the request */
  | 'protocol'
  /** the client was closed */
  | 'client_closed';

export class ModbusError extends Error {
  readonly kind: ModbusErrorKind;
  readonly exceptionCode: number | undefined;
  constructor(kind: ModbusErrorKind, message: string, opts: { exceptionCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ModbusError';
    this.kind = kind;
    this.exceptionCode = opts.exceptionCode;
  }
}

export interface ModbusTcpClientOptions {
  host: string;
  port: number;
  /** Per-request timeout, connect time included. Default 1000 ms. */
  timeoutMs?: number;
}

interface PendingRequest {
  unitId: number;
  functionCode: number;
  resolve(pdu: Buffer): void;
  reject(err: ModbusError): void;
  timer: NodeJS.Timeout;
}

/** What the collector needs from a client; a seam for tests. */
export interface HoldingRegisterReader {
  readHoldingRegisters(unitId: number, address: number, quantity: number): Promise<number[]>;
  close(): Promise<void>;
}

export class ModbusTcpClient implements HoldingRegisterReader {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  #socket: Socket | undefined;
  #connecting: Promise<Socket> | undefined;
  #framer = new MbapFramer();
  #pending = new Map<number, PendingRequest>();
  #nextTid = 1;
  /** chunks received on any connection so far: "has anything arrived since I sent?" */
  #rxChunks = 0;
  #closed = false;

  constructor(opts: ModbusTcpClientOptions) {
    this.host = opts.host;
    this.port = opts.port;
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  get connected(): boolean {
    return this.#socket !== undefined && !this.#socket.destroyed && !this.#socket.connecting;
  }

  async readHoldingRegisters(unitId: number, address: number, quantity: number): Promise<number[]> {
    return this.#readRegisters(FunctionCode.READ_HOLDING_REGISTERS, unitId, address, quantity);
  }

  async readInputRegisters(unitId: number, address: number, quantity: number): Promise<number[]> {
    return this.#readRegisters(FunctionCode.READ_INPUT_REGISTERS, unitId, address, quantity);
  }

  async writeSingleRegister(unitId: number, address: number, value: number): Promise<void> {
    const req = writeSingleRegisterPdu(address, value);
    const res = await this.#request(unitId, req);
    if (!res.equals(req)) throw new ModbusError('protocol', 'write single register: response does not echo the request');
  }

  async writeMultipleRegisters(unitId: number, address: number, values: readonly number[]): Promise<void> {
    const req = writeMultipleRegistersPdu(address, values);
    const res = await this.#request(unitId, req);
    if (res.length !== 5 || !res.equals(req.subarray(0, 5))) {
      throw new ModbusError('protocol', 'write multiple registers: response does not match the request');
    }
  }

  /** Fails pending requests with 'client_closed' and closes the connection. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#failAll(new ModbusError('client_closed', 'client closed'));
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end();
      // A peer that never acknowledges the FIN must not hold close() up.
      setTimeout(() => socket.destroy(), 200).unref();
    });
  }

  async #readRegisters(
    fc: typeof FunctionCode.READ_HOLDING_REGISTERS | typeof FunctionCode.READ_INPUT_REGISTERS,
    unitId: number,
    address: number,
    quantity: number,
  ): Promise<number[]> {
    const res = await this.#request(unitId, readRegistersPdu(fc, address, quantity));
    const values = parseReadRegistersResponse(res, quantity);
    if (!values) throw new ModbusError('protocol', `read registers: malformed response (${res.length} bytes for ${quantity} registers)`);
    return values;
  }

  #request(unitId: number, pdu: Buffer): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new ModbusError('client_closed', 'client closed'));
    if (!Number.isInteger(unitId) || unitId < 0 || unitId > 255) return Promise.reject(new RangeError(`unit id ${unitId}`));
    const tid = this.#allocateTid();
    return new Promise<Buffer>((resolve, reject) => {
      const rxAtSend = this.#rxChunks;
      const timer = setTimeout(() => {
        if (!this.#pending.delete(tid)) return;
        reject(new ModbusError('timeout', `no response within ${this.timeoutMs} ms`));
        // Nothing at all received since this request went out: the link is likely dead (or the
        // connect hangs), so start afresh next time. Otherwise one slow unit behind a shared
        // gateway would cut off its neighbours' answers.
        if (this.#rxChunks === rxAtSend) this.#dropSocket(new ModbusError('connection_closed', 'connection dropped after a timeout'));
      }, this.timeoutMs);
      this.#pending.set(tid, { unitId, functionCode: pdu.readUInt8(0), resolve, reject, timer });
      this.#connect().then(
        (socket) => {
          if (this.#pending.has(tid)) socket.write(encodeFrame(tid, unitId, pdu));
        },
        (err: ModbusError) => {
          const p = this.#pending.get(tid);
          if (!p) return;
          this.#pending.delete(tid);
          clearTimeout(p.timer);
          reject(err);
        },
      );
    });
  }

  #allocateTid(): number {
    for (let i = 0; i < 0x10000; i++) {
      const tid = this.#nextTid;
      this.#nextTid = (this.#nextTid + 1) & 0xffff;
      if (!this.#pending.has(tid)) return tid;
    }
    throw new ModbusError('protocol', '65536 requests in flight');
  }

  #connect(): Promise<Socket> {
    if (this.#socket && !this.#socket.destroyed && !this.#socket.connecting) return Promise.resolve(this.#socket);
    if (this.#connecting) return this.#connecting;
    this.#framer = new MbapFramer();
    const socket = createConnection({ host: this.host, port: this.port, noDelay: true });
    this.#socket = socket;
    let connected = false;
    let failure: ModbusError | undefined;
    const connecting = new Promise<Socket>((resolve, reject) => {
      socket.once('connect', () => {
        connected = true;
        resolve(socket);
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected) failure ??= this.#connectError(err);
        else if (err.code === 'ECONNRESET' || err.code === 'EPIPE') failure ??= new ModbusError('connection_closed', `connection to ${this.#where()} reset by the server`, { cause: err });
        else failure ??= new ModbusError('connection_error', `connection to ${this.#where()} failed: ${err.code ?? err.message}`, { cause: err });
      });
      // 'close' always follows 'error', so the failure is settled here, once, for both cases.
      socket.once('close', () => {
        const err =
          failure ??
          new ModbusError('connection_closed', connected ? `connection to ${this.#where()} closed by the server` : `connection to ${this.#where()} closed while connecting`);
        reject(err);
        // A socket already dropped or replaced has had its requests failed by whoever dropped it.
        if (this.#socket === socket) {
          this.#socket = undefined;
          this.#failAll(err);
        }
      });
    });
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk));
    this.#connecting = connecting;
    const clear = () => {
      if (this.#connecting === connecting) this.#connecting = undefined;
    };
    connecting.then(clear, clear);
    return connecting;
  }

  #connectError(err: NodeJS.ErrnoException): ModbusError {
    if (err.code === 'ECONNREFUSED') return new ModbusError('connection_refused', `connection refused by ${this.#where()}`, { cause: err });
    return new ModbusError('connection_error', `cannot connect to ${this.#where()}: ${err.code ?? err.message}`, { cause: err });
  }

  #onData(socket: Socket, chunk: Buffer): void {
    this.#rxChunks++;
    let frames;
    try {
      frames = this.#framer.push(chunk);
    } catch (err) {
      this.#dropSocket(new ModbusError('protocol', (err as Error).message));
      socket.destroy();
      return;
    }
    for (const frame of frames) {
      const p = this.#pending.get(frame.transactionId);
      if (!p || frame.protocolId !== 0) continue; // late answer to a timed-out request, or not Modbus
      this.#pending.delete(frame.transactionId);
      clearTimeout(p.timer);
      const fc = frame.pdu.readUInt8(0);
      if (fc === (p.functionCode | 0x80)) {
        const code = frame.pdu.length >= 2 ? frame.pdu.readUInt8(1) : 0;
        p.reject(new ModbusError('exception', `modbus exception 0x${code.toString(16).padStart(2, '0')} (${exceptionName(code)})`, { exceptionCode: code }));
      } else if (fc !== p.functionCode) {
        p.reject(new ModbusError('protocol', `response function code ${fc} for request ${p.functionCode}`));
      } else {
        p.resolve(frame.pdu);
      }
    }
  }

  #dropSocket(reason: ModbusError): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#connecting = undefined;
    this.#failAll(reason);
    socket?.destroy();
  }

  #failAll(err: ModbusError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  #where(): string {
    return `${this.host}:${this.port}`;
  }
}
