/**
 * Modbus TCP application protocol (MBAP) framing and the register PDUs GreenShield uses. Shared
 * by the client (agent) and the server (simulators); the server is cross-checked against an
 * independent client (mbpoll/libmodbus) in test/integration, so a bug here cannot hide by being
 * symmetric.
 *
 * Frame: transaction id (u16) | protocol id (u16, 0 = Modbus) | length (u16, bytes that follow)
 *        | unit id (u8) | PDU (function code u8 + data). All fields big-endian.
 */

export const FunctionCode = {
  READ_HOLDING_REGISTERS: 0x03,
  READ_INPUT_REGISTERS: 0x04,
  WRITE_SINGLE_REGISTER: 0x06,
  WRITE_MULTIPLE_REGISTERS: 0x10,
} as const;
export type FunctionCode = (typeof FunctionCode)[keyof typeof FunctionCode];

export const ExceptionCode = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  SERVER_DEVICE_FAILURE: 0x04,
  GATEWAY_PATH_UNAVAILABLE: 0x0a,
  GATEWAY_TARGET_FAILED: 0x0b,
} as const;
export type ExceptionCode = (typeof ExceptionCode)[keyof typeof ExceptionCode];

const EXCEPTION_NAMES: Record<number, string> = {
  0x01: 'illegal function',
  0x02: 'illegal data address',
  0x03: 'illegal data value',
  0x04: 'server device failure',
  0x05: 'acknowledge',
  0x06: 'server device busy',
  0x08: 'memory parity error',
  0x0a: 'gateway path unavailable',
  0x0b: 'gateway target device failed to respond',
};
export function exceptionName(code: number): string {
  return EXCEPTION_NAMES[code] ?? `exception 0x${code.toString(16).padStart(2, '0')}`;
}

/** Thrown by a register bank to make the server answer with an exception response. */
export class ModbusException extends Error {
  readonly exceptionCode: number;
  constructor(exceptionCode: number, detail?: string) {
    super(`modbus exception 0x${exceptionCode.toString(16).padStart(2, '0')} (${exceptionName(exceptionCode)})${detail ? `: ${detail}` : ''}`);
    this.name = 'ModbusException';
    this.exceptionCode = exceptionCode;
  }
}

export const MBAP_HEADER_BYTES = 7;
/** Modbus PDU limit (256-byte serial ADU minus address and CRC). */
export const MAX_PDU_BYTES = 253;
/** Spec limits per request: 125 registers read (250 data bytes), 123 written (246 bytes). */
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_REGISTERS = 123;

export interface MbapFrame {
  transactionId: number;
  protocolId: number;
  unitId: number;
  pdu: Buffer;
}

export function encodeFrame(transactionId: number, unitId: number, pdu: Buffer): Buffer {
  if (pdu.length < 1 || pdu.length > MAX_PDU_BYTES) throw new RangeError(`PDU of ${pdu.length} bytes`);
  const frame = Buffer.allocUnsafe(MBAP_HEADER_BYTES + pdu.length);
  frame.writeUInt16BE(transactionId & 0xffff, 0);
  frame.writeUInt16BE(0, 2);
  frame.writeUInt16BE(pdu.length + 1, 4);
  frame.writeUInt8(unitId & 0xff, 6);
  pdu.copy(frame, MBAP_HEADER_BYTES);
  return frame;
}

export class MbapFramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MbapFramingError';
  }
}

/**
 * Splits a TCP byte stream into MBAP frames: a chunk may hold part of a frame, several frames,
 * or both. A length field outside 2..254 means the stream cannot be resynchronised (there is no
 * frame delimiter), so `push` throws and the caller must drop the connection.
 */
export class MbapFramer {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): MbapFrame[] {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: MbapFrame[] = [];
    while (buf.length >= MBAP_HEADER_BYTES) {
      const length = buf.readUInt16BE(4);
      if (length < 2 || length > MAX_PDU_BYTES + 1) {
        this.#pending = Buffer.alloc(0);
        throw new MbapFramingError(`MBAP length ${length} is outside 2..${MAX_PDU_BYTES + 1}`);
      }
      const total = 6 + length;
      if (buf.length < total) break;
      frames.push({
        transactionId: buf.readUInt16BE(0),
        protocolId: buf.readUInt16BE(2),
        unitId: buf.readUInt8(6),
        // Copy: the frame may outlive the chunk, and a view would pin the whole socket buffer.
        pdu: Buffer.from(buf.subarray(MBAP_HEADER_BYTES, total)),
      });
      buf = buf.subarray(total);
    }
    this.#pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return frames;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.#pending.length;
  }
}

// ---- request PDUs ------------------------------------------------------------------------------

function checkRegisterRange(address: number, quantity: number, max: number): void {
  if (!Number.isInteger(address) || address < 0 || address > 0xffff) throw new RangeError(`register address ${address}`);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > max) throw new RangeError(`register quantity ${quantity} (1..${max})`);
  if (address + quantity > 0x10000) throw new RangeError(`registers ${address}+${quantity} run past 65535`);
}
function checkValue(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new RangeError(`register value ${value} is not a uint16`);
}

export function readRegistersPdu(
  functionCode: typeof FunctionCode.READ_HOLDING_REGISTERS | typeof FunctionCode.READ_INPUT_REGISTERS,
  address: number,
  quantity: number,
): Buffer {
  checkRegisterRange(address, quantity, MAX_READ_REGISTERS);
  const pdu = Buffer.allocUnsafe(5);
  pdu.writeUInt8(functionCode, 0);
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(quantity, 3);
  return pdu;
}

export function writeSingleRegisterPdu(address: number, value: number): Buffer {
  checkRegisterRange(address, 1, 1);
  checkValue(value);
  const pdu = Buffer.allocUnsafe(5);
  pdu.writeUInt8(FunctionCode.WRITE_SINGLE_REGISTER, 0);
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(value, 3);
  return pdu;
}

export function writeMultipleRegistersPdu(address: number, values: readonly number[]): Buffer {
  checkRegisterRange(address, values.length, MAX_WRITE_REGISTERS);
  const pdu = Buffer.allocUnsafe(6 + 2 * values.length);
  pdu.writeUInt8(FunctionCode.WRITE_MULTIPLE_REGISTERS, 0);
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(values.length, 3);
  pdu.writeUInt8(2 * values.length, 5);
  values.forEach((v, i) => {
    checkValue(v);
    pdu.writeUInt16BE(v, 6 + 2 * i);
  });
  return pdu;
}

export function exceptionPdu(functionCode: number, exceptionCode: number): Buffer {
  return Buffer.from([(functionCode | 0x80) & 0xff, exceptionCode & 0xff]);
}

/** Reads the register values out of an FC 03/04 response PDU; undefined if it is malformed. */
export function parseReadRegistersResponse(pdu: Buffer, expectedQuantity: number): number[] | undefined {
  if (pdu.length < 2) return undefined;
  const byteCount = pdu.readUInt8(1);
  if (byteCount !== 2 * expectedQuantity || pdu.length !== 2 + byteCount) return undefined;
  const values: number[] = [];
  for (let i = 0; i < expectedQuantity; i++) values.push(pdu.readUInt16BE(2 + 2 * i));
  return values;
}

/** uint16 register ↔ int16 (two's complement). */
export function toInt16(register: number): number {
  return register >= 0x8000 ? register - 0x10000 : register;
}
export function fromInt16(value: number): number {
  const v = Math.max(-0x8000, Math.min(0x7fff, Math.round(value)));
  return v < 0 ? v + 0x10000 : v;
}
