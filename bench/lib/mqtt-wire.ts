/**
 * The few MQTT 3.1.1 packets the benchmarks need, encoded and parsed by hand over raw sockets.
 * mqtt.js costs tens of kilobytes and a stream pipeline per client; 10,000 of them in one
 * process would measure the load generator, not the gateway.
 */

export const PACKET = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBSCRIBE: 8,
  SUBACK: 9,
  PINGRESP: 13,
} as const;

/** Remaining-length varint (MQTT 3.1.1 §2.2.3). */
function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

function utf8Field(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/**
 * CONNECT, clean session, no will; with `auth`, a username and password (an agent's or device's
 * credentials, docs/security.md). keepalive 0 = the broker never times us out.
 */
export function encodeConnect(clientId: string, keepaliveSec: number, auth?: { username: string; password: string }): Buffer {
  // Connect flags: 0x02 clean session, 0x80 username, 0x40 password.
  const flags = auth ? 0xc2 : 0x02;
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, flags, keepaliveSec >> 8, keepaliveSec & 0xff]);
  const payload = auth ? Buffer.concat([utf8Field(clientId), utf8Field(auth.username), utf8Field(auth.password)]) : utf8Field(clientId);
  const rem = variable.length + payload.length;
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(rem)]), variable, payload]);
}

export function encodeSubscribe(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const topic = utf8Field(filter);
  const rem = 2 + topic.length + 1;
  return Buffer.concat([Buffer.from([0x82, ...remainingLength(rem), packetId >> 8, packetId & 0xff]), topic, Buffer.from([qos])]);
}

export function encodePuback(packetId: number): Buffer {
  return Buffer.from([0x40, 0x02, packetId >> 8, packetId & 0xff]);
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/**
 * A QoS1 PUBLISH template for one device: the topic (with its length prefix) and the JSON tail
 * are built once; per message only `{"ts":…,"seq":…` and the packet id are written.
 */
export class TelemetryTemplate {
  readonly #topic: Buffer;
  readonly #tail: Buffer;

  constructor(topic: string, valuesJson: string) {
    this.#topic = utf8Field(topic);
    this.#tail = Buffer.from(`,"values":${valuesJson}}`, 'utf8');
  }

  /** One PUBLISH packet (QoS1, not retained). */
  packet(packetId: number, ts: number, seq: number): Buffer {
    const head = `{"ts":${ts},"seq":${seq}`;
    const payloadLen = head.length + this.#tail.length;
    const rem = this.#topic.length + 2 + payloadLen;
    if (rem >= 16_384) throw new Error('telemetry packet too large for a 2-byte length');
    const lenBytes = rem < 128 ? 1 : 2;
    const buf = Buffer.allocUnsafe(1 + lenBytes + rem);
    let o = 0;
    buf[o++] = 0x32; // PUBLISH, QoS1
    if (lenBytes === 1) buf[o++] = rem;
    else {
      buf[o++] = (rem & 0x7f) | 0x80;
      buf[o++] = rem >> 7;
    }
    o += this.#topic.copy(buf, o);
    buf[o++] = packetId >> 8;
    buf[o++] = packetId & 0xff;
    o += buf.write(head, o, 'latin1');
    this.#tail.copy(buf, o);
    return buf;
  }
}

export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/**
 * Splits a byte stream into MQTT packets. Holds at most one partial packet between chunks.
 * Throws on a malformed length (the caller drops the connection).
 */
export class PacketReader {
  #pending: Buffer | null = null;

  push(chunk: Buffer, onPacket: (type: number, flags: number, body: Buffer) => void): void {
    let buf = chunk;
    if (this.#pending) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = null;
    }
    let o = 0;
    while (o < buf.length) {
      if (buf.length - o < 2) break;
      const first = buf[o]!;
      let rem = 0;
      let mult = 1;
      let i = o + 1;
      let complete = false;
      for (let n = 0; n < 4; n++) {
        if (i >= buf.length) break;
        const b = buf[i++]!;
        rem += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
        if (n === 3) throw new Error('malformed remaining length');
      }
      if (!complete || i + rem > buf.length) break;
      onPacket(first >> 4, first & 0x0f, buf.subarray(i, i + rem));
      o = i + rem;
    }
    if (o < buf.length) this.#pending = Buffer.from(buf.subarray(o));
  }
}

/** Topic name and packet id of a PUBLISH body (QoS > 0 carries a packet id). */
export function parsePublish(flags: number, body: Buffer): { topic: string; packetId: number; qos: number; payload: Buffer } {
  const qos = (flags >> 1) & 0x03;
  const topicLen = body.readUInt16BE(0);
  const topic = body.toString('utf8', 2, 2 + topicLen);
  let o = 2 + topicLen;
  let packetId = 0;
  if (qos > 0) {
    packetId = body.readUInt16BE(o);
    o += 2;
  }
  return { topic, packetId, qos, payload: body.subarray(o) };
}
