import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  ExceptionCode,
  fromInt16,
  MbapFramer,
  MbapFramingError,
  ModbusException,
  parseReadRegistersResponse,
  readRegistersPdu,
  toInt16,
  writeMultipleRegistersPdu,
  writeSingleRegisterPdu,
} from '../../edge-agent/src/modbus/mbap.js';
import { handleRequestPdu, type RegisterBank } from '../../simulators/src/modbus/server.js';

/** Registers 0..19 holding 1000 + address; only 10..19 writable. */
function bank(): RegisterBank & { regs: number[]; reads: string[] } {
  const regs = Array.from({ length: 20 }, (_, i) => 1000 + i);
  const reads: string[] = [];
  return {
    regs,
    reads,
    read(table, address, quantity) {
      reads.push(table);
      if (address + quantity > regs.length) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
      return regs.slice(address, address + quantity);
    },
    write(address, values) {
      if (address < 10 || address + values.length > regs.length) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS);
      if (values.some((v) => v > 9999)) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE);
      values.forEach((v, i) => (regs[address + i] = v));
    },
  };
}

describe('MBAP framing', () => {
  const req = encodeFrame(0x1234, 1, readRegistersPdu(0x03, 0, 6));

  it('encodes the header: transaction id, protocol 0, length = unit + PDU, unit id', () => {
    expect([...req]).toEqual([0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x06]);
  });

  it('reassembles a frame delivered one byte at a time', () => {
    const framer = new MbapFramer();
    const frames = [];
    for (let i = 0; i < req.length; i++) {
      const out = framer.push(req.subarray(i, i + 1));
      if (i < req.length - 1) expect(out).toEqual([]);
      frames.push(...out);
    }
    expect(frames).toHaveLength(1);
    expect(frames[0]).toMatchObject({ transactionId: 0x1234, protocolId: 0, unitId: 1 });
    expect([...frames[0]!.pdu]).toEqual([0x03, 0x00, 0x00, 0x00, 0x06]);
    expect(framer.buffered).toBe(0);
  });

  it('splits merged frames, including a partial one carried into the next chunk', () => {
    const a = encodeFrame(1, 1, readRegistersPdu(0x03, 0, 2));
    const b = encodeFrame(2, 7, writeSingleRegisterPdu(6, 900));
    const c = encodeFrame(3, 255, writeMultipleRegistersPdu(6, [1, 2, 3]));
    const stream = Buffer.concat([a, b, c]);
    const framer = new MbapFramer();
    const cut = a.length + b.length + 4; // inside c's header
    const first = framer.push(stream.subarray(0, cut));
    expect(first.map((f) => f.transactionId)).toEqual([1, 2]);
    expect(framer.buffered).toBe(4);
    const second = framer.push(stream.subarray(cut));
    expect(second.map((f) => [f.transactionId, f.unitId])).toEqual([[3, 255]]);
    expect([...second[0]!.pdu]).toEqual([0x10, 0, 6, 0, 3, 6, 0, 1, 0, 2, 0, 3]);
  });

  it('keeps frames intact when the source chunk is reused afterwards', () => {
    const framer = new MbapFramer();
    const chunk = Buffer.from(req);
    const [frame] = framer.push(chunk);
    chunk.fill(0);
    expect([...frame!.pdu]).toEqual([0x03, 0x00, 0x00, 0x00, 0x06]);
  });

  it('refuses a length field that cannot be a Modbus frame (no way to resynchronise)', () => {
    const bad = Buffer.from(req);
    bad.writeUInt16BE(300, 4);
    expect(() => new MbapFramer().push(bad)).toThrow(MbapFramingError);
    const tiny = Buffer.from(req);
    tiny.writeUInt16BE(1, 4);
    expect(() => new MbapFramer().push(tiny)).toThrow(MbapFramingError);
  });

  it('reports a non-Modbus protocol id so the server can discard the frame', () => {
    const other = Buffer.from(req);
    other.writeUInt16BE(7, 2);
    expect(new MbapFramer().push(other)[0]?.protocolId).toBe(7);
  });
});

describe('request handling (PDU level)', () => {
  const pdu = (...bytes: number[]) => Buffer.from(bytes);

  it('FC 03 returns byte count and big-endian registers', () => {
    const res = handleRequestPdu(bank(), readRegistersPdu(0x03, 2, 3));
    expect([...res]).toEqual([0x03, 6, 0x03, 0xea, 0x03, 0xeb, 0x03, 0xec]);
    expect(parseReadRegistersResponse(res, 3)).toEqual([1002, 1003, 1004]);
  });

  it('FC 04 reads the input table through the same bank', () => {
    const b = bank();
    const res = handleRequestPdu(b, readRegistersPdu(0x04, 0, 1));
    expect([...res]).toEqual([0x04, 2, 0x03, 0xe8]);
    expect(b.reads).toEqual(['input']);
  });

  it('FC 06 writes and echoes the request', () => {
    const b = bank();
    const req = writeSingleRegisterPdu(12, 4321);
    expect(handleRequestPdu(b, req).equals(req)).toBe(true);
    expect(b.regs[12]).toBe(4321);
  });

  it('FC 16 writes all registers and answers address + quantity', () => {
    const b = bank();
    const res = handleRequestPdu(b, writeMultipleRegistersPdu(10, [7, 8, 9]));
    expect([...res]).toEqual([0x10, 0, 10, 0, 3]);
    expect(b.regs.slice(10, 13)).toEqual([7, 8, 9]);
  });

  it('exception 01 for an unsupported function code', () => {
    expect([...handleRequestPdu(bank(), pdu(0x2b, 0x0e, 0x01, 0x00))]).toEqual([0xab, 0x01]);
    expect([...handleRequestPdu(bank(), pdu(0x01, 0, 0, 0, 8))]).toEqual([0x81, 0x01]);
  });

  it('exception 02 for addresses outside the map, for reads and writes', () => {
    expect([...handleRequestPdu(bank(), readRegistersPdu(0x03, 18, 5))]).toEqual([0x83, 0x02]);
    expect([...handleRequestPdu(bank(), readRegistersPdu(0x04, 0xffff, 1))]).toEqual([0x84, 0x02]);
    expect([...handleRequestPdu(bank(), writeSingleRegisterPdu(3, 1))]).toEqual([0x86, 0x02]);
    expect([...handleRequestPdu(bank(), writeMultipleRegistersPdu(19, [1, 2]))]).toEqual([0x90, 0x02]);
  });

  it('exception 03 for bad quantities, byte counts, lengths and values', () => {
    expect([...handleRequestPdu(bank(), pdu(0x03, 0, 0, 0, 0))]).toEqual([0x83, 0x03]); // quantity 0
    expect([...handleRequestPdu(bank(), pdu(0x03, 0, 0, 0, 126))]).toEqual([0x83, 0x03]); // > 125
    expect([...handleRequestPdu(bank(), pdu(0x03, 0, 0))]).toEqual([0x83, 0x03]); // truncated
    expect([...handleRequestPdu(bank(), pdu(0x10, 0, 10, 0, 2, 3, 0, 1, 0))]).toEqual([0x90, 0x03]); // byte count ≠ 2×qty
    expect([...handleRequestPdu(bank(), pdu(0x10, 0, 10, 0, 2, 4, 0, 1))]).toEqual([0x90, 0x03]); // data shorter than count
    expect([...handleRequestPdu(bank(), writeSingleRegisterPdu(11, 10_000))]).toEqual([0x86, 0x03]);
  });

  it('a FC 16 with one bad value writes nothing', () => {
    const b = bank();
    handleRequestPdu(b, writeMultipleRegistersPdu(10, [1, 10_000]));
    expect(b.regs[10]).toBe(1010);
  });

  it('exception 04 when the bank fails for another reason', () => {
    const broken: RegisterBank = {
      read() {
        throw new Error('sensor bus down');
      },
      write() {},
    };
    expect([...handleRequestPdu(broken, readRegistersPdu(0x03, 0, 1))]).toEqual([0x83, 0x04]);
  });

  it('rejects malformed read responses', () => {
    expect(parseReadRegistersResponse(pdu(0x03, 4, 0, 1), 2)).toBeUndefined();
    expect(parseReadRegistersResponse(pdu(0x03, 2, 0, 1), 2)).toBeUndefined();
    expect(parseReadRegistersResponse(pdu(0x03), 1)).toBeUndefined();
  });

  it('int16 helpers', () => {
    expect(toInt16(0xffff)).toBe(-1);
    expect(toInt16(0x7fff)).toBe(32767);
    expect(fromInt16(-37)).toBe(0xffdb);
    expect(fromInt16(-40000)).toBe(0x8000);
  });
});
