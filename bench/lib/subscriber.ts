/**
 * A raw-socket MQTT subscriber that consumes every telemetry message at QoS1 and acknowledges
 * it: the consumer behind the bare aedes broker, standing in for the gateway's ingest. PUBACKs
 * for one socket read go out in one write.
 */
import { connect, type Socket } from 'node:net';
import { PACKET, PacketReader, encodeConnect, encodeSubscribe } from './mqtt-wire.js';

export class CountingSubscriber {
  received = 0;
  #socket: Socket | undefined;

  async start(port: number, filter: string, timeoutMs = 10_000): Promise<void> {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    this.#socket = socket;
    const reader = new PacketReader();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('subscriber: no SUBACK')), timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.on('connect', () => socket.write(encodeConnect('bench-consumer', 0)));
      socket.on('data', (chunk: Buffer) => {
        const acks: number[] = [];
        reader.push(chunk, (type, flags, body) => {
          if (type === PACKET.PUBLISH) {
            this.received++;
            // Only the packet id is needed: it follows the topic (2-byte length + bytes).
            if (((flags >> 1) & 0x03) === 1) acks.push(body.readUInt16BE(2 + body.readUInt16BE(0)));
          } else if (type === PACKET.CONNACK) {
            if (body[1] !== 0) reject(new Error(`subscriber: CONNACK ${body[1]}`));
            else socket.write(encodeSubscribe(1, filter, 1));
          } else if (type === PACKET.SUBACK) {
            clearTimeout(timer);
            if (body[2] === 0x80) reject(new Error('subscriber: subscription refused'));
            else resolve();
          }
        });
        if (acks.length > 0) {
          const out = Buffer.allocUnsafe(acks.length * 4);
          acks.forEach((id, i) => {
            out[i * 4] = 0x40;
            out[i * 4 + 1] = 0x02;
            out.writeUInt16BE(id, i * 4 + 2);
          });
          socket.write(out);
        }
      });
    });
  }

  close(): void {
    this.#socket?.destroy();
  }
}
