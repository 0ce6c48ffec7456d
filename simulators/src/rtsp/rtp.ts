/**
 * RTP/RTCP handling for fan-out: one encoder's packets go to every viewer of a camera, each
 * viewer with its own SSRC, sequence numbers and timestamps (RFC 3550 wants a random start for
 * both, and a viewer's numbers must not jump when it joins a stream that has run for an hour).
 *
 * A viewer starts on a key frame (the packet that carries the SPS or the first slice of an IDR
 * picture), so its first decoded picture is whole; the encoder sends one every second.
 */
import { randomBytes } from 'node:crypto';

export const RTP_HEADER_MIN = 12;
export const H264_CLOCK_RATE = 90_000;

export interface RtpHeader {
  marker: boolean;
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** where the payload starts (after CSRCs and a header extension) */
  payloadOffset: number;
}

export function parseRtpHeader(packet: Buffer): RtpHeader | undefined {
  if (packet.length < RTP_HEADER_MIN) return undefined;
  const b0 = packet.readUInt8(0);
  if (b0 >> 6 !== 2) return undefined;
  const b1 = packet.readUInt8(1);
  if (b1 >= 200 && b1 <= 204) return undefined; // an RTCP packet (marker + PT 72..76)
  let offset = RTP_HEADER_MIN + 4 * (b0 & 0x0f);
  if (b0 & 0x10) {
    if (packet.length < offset + 4) return undefined;
    offset += 4 + 4 * packet.readUInt16BE(offset + 2);
  }
  if (offset > packet.length) return undefined;
  return {
    marker: (b1 & 0x80) !== 0,
    payloadType: b1 & 0x7f,
    seq: packet.readUInt16BE(2),
    timestamp: packet.readUInt32BE(4),
    ssrc: packet.readUInt32BE(8),
    payloadOffset: offset,
  };
}

const NAL_IDR = 5;
const NAL_SPS = 7;
const STAP_A = 24;
const FU_A = 28;

/**
 * Whether an H.264 RTP payload (RFC 6184) begins a key frame: an SPS or an IDR slice as a single
 * NAL unit, inside a STAP-A, or as the first fragment of an FU-A.
 */
export function startsH264KeyFrame(payload: Buffer): boolean {
  if (payload.length < 1) return false;
  const type = payload.readUInt8(0) & 0x1f;
  if (type === NAL_SPS || type === NAL_IDR) return true;
  if (type === FU_A) {
    if (payload.length < 2) return false;
    const fu = payload.readUInt8(1);
    return (fu & 0x80) !== 0 && ((fu & 0x1f) === NAL_IDR || (fu & 0x1f) === NAL_SPS);
  }
  if (type === STAP_A) {
    for (let at = 1; at + 3 <= payload.length; ) {
      const size = payload.readUInt16BE(at);
      const inner = payload.readUInt8(at + 2) & 0x1f;
      if (inner === NAL_SPS || inner === NAL_IDR) return true;
      at += 2 + size;
    }
  }
  return false;
}

export function randomUint32(): number {
  return randomBytes(4).readUInt32BE(0);
}

/** Where a viewer's numbering continues: announced in PLAY's RTP-Info, met by its first packet. */
export interface RtpStart {
  seq: number;
  rtptime: number;
}

/**
 * Renumbers the encoder's packets for one viewer. `arm()` (at PLAY) fixes the sequence number
 * and timestamp the viewer's first packet will carry; that first packet is the next key-frame
 * start. After that the mapping is a fixed offset, so losses upstream stay visible as gaps.
 * `skipToKeyFrame()` drops packets until the next key frame while keeping the offsets (used when
 * a viewer falls behind: the gap shows as loss, and decoding restarts on a whole picture).
 */
export class ViewerRtpMapper {
  readonly ssrc: number;
  #state: 'idle' | 'armed' | 'running' | 'skipping' = 'idle';
  #seqOffset = 0;
  #tsOffset = 0;
  #next: RtpStart;
  #lastSeq: number | undefined;
  #lastTs: number | undefined;
  #lastSentAt = 0;
  #packets = 0;
  #octets = 0;
  #now: () => number;

  constructor(opts: { ssrc?: number; seq?: number; rtptime?: number; now?: () => number } = {}) {
    this.ssrc = opts.ssrc ?? randomUint32();
    this.#next = { seq: (opts.seq ?? randomUint32()) & 0xffff, rtptime: (opts.rtptime ?? randomUint32()) >>> 0 };
    this.#now = opts.now ?? Date.now;
  }

  get state(): 'idle' | 'armed' | 'running' | 'skipping' {
    return this.#state;
  }
  /** RTP packets and payload octets sent so far (for this viewer's sender reports) */
  get packetCount(): number {
    return this.#packets;
  }
  get octetCount(): number {
    return this.#octets;
  }

  /**
   * Starts (or resumes after PAUSE) delivery. A resumed viewer continues its sequence numbers
   * and moves its clock on by the time it was paused.
   */
  arm(): RtpStart {
    if (this.#lastSeq !== undefined && this.#lastTs !== undefined) {
      const pausedTicks = Math.round(((this.#now() - this.#lastSentAt) * H264_CLOCK_RATE) / 1000);
      this.#next = { seq: (this.#lastSeq + 1) & 0xffff, rtptime: (this.#lastTs + Math.max(1, pausedTicks)) >>> 0 };
    }
    this.#state = 'armed';
    return { ...this.#next };
  }

  /** Stops delivery (PAUSE). */
  pause(): void {
    this.#state = 'idle';
  }

  skipToKeyFrame(): void {
    if (this.#state === 'running') this.#state = 'skipping';
  }

  /** The packet as this viewer gets it, or undefined if it is not sent to this viewer. */
  map(packet: Buffer): Buffer | undefined {
    if (this.#state === 'idle') return undefined;
    const header = parseRtpHeader(packet);
    if (!header) return undefined;
    if (this.#state === 'armed' || this.#state === 'skipping') {
      if (!startsH264KeyFrame(packet.subarray(header.payloadOffset))) return undefined;
      if (this.#state === 'armed') {
        this.#seqOffset = (this.#next.seq - header.seq) & 0xffff;
        this.#tsOffset = (this.#next.rtptime - header.timestamp) >>> 0;
      }
      this.#state = 'running';
    }
    const out = Buffer.from(packet);
    const seq = (header.seq + this.#seqOffset) & 0xffff;
    const ts = (header.timestamp + this.#tsOffset) >>> 0;
    out.writeUInt16BE(seq, 2);
    out.writeUInt32BE(ts, 4);
    out.writeUInt32BE(this.ssrc, 8);
    this.#lastSeq = seq;
    this.#lastTs = ts;
    this.#lastSentAt = this.#now();
    this.#packets++;
    this.#octets += packet.length - header.payloadOffset;
    return out;
  }

  /**
   * The encoder's RTCP compound packet as this viewer gets it: sender reports and SDES with this
   * viewer's SSRC, RTP time and counts; anything else (BYE, APP) is left out. undefined while
   * the viewer has not received its first packet.
   */
  mapRtcp(compound: Buffer): Buffer | undefined {
    if (this.#state !== 'running' && this.#state !== 'skipping') return undefined;
    const parts: Buffer[] = [];
    for (let at = 0; at + 4 <= compound.length; ) {
      const length = 4 * (compound.readUInt16BE(at + 2) + 1);
      if (at + length > compound.length || compound.readUInt8(at) >> 6 !== 2) break;
      const pt = compound.readUInt8(at + 1);
      const part = Buffer.from(compound.subarray(at, at + length));
      if (pt === RTCP_SR && part.length >= 28) {
        part.writeUInt32BE(this.ssrc, 4);
        part.writeUInt32BE((part.readUInt32BE(16) + this.#tsOffset) >>> 0, 16);
        part.writeUInt32BE(this.#packets >>> 0, 20);
        part.writeUInt32BE(this.#octets >>> 0, 24);
        parts.push(part.readUInt8(0) & 0x1f ? withoutReportBlocks(part) : part);
      } else if (pt === RTCP_SDES && part.length >= 8 && (part.readUInt8(0) & 0x1f) === 1) {
        part.writeUInt32BE(this.ssrc, 4);
        parts.push(part);
      }
      at += length;
    }
    return parts.length > 0 ? Buffer.concat(parts) : undefined;
  }
}

export const RTCP_SR = 200;
export const RTCP_RR = 201;
export const RTCP_SDES = 202;
export const RTCP_BYE = 203;

/** An SR keeps its sender info; reception report blocks about the encoder's peers mean nothing here. */
function withoutReportBlocks(sr: Buffer): Buffer {
  const out = Buffer.from(sr.subarray(0, 28));
  out.writeUInt8(0x80, 0);
  out.writeUInt16BE(28 / 4 - 1, 2);
  return out;
}

/** An empty receiver report followed by BYE for `ssrc`: "this source has left" (RFC 3550 6.6). */
export function rtcpBye(ssrc: number, reason = 'stream ended'): Buffer {
  const rr = Buffer.alloc(8);
  rr.writeUInt8(0x80, 0);
  rr.writeUInt8(RTCP_RR, 1);
  rr.writeUInt16BE(1, 2);
  rr.writeUInt32BE(ssrc, 4);
  const text = Buffer.from(reason, 'utf8').subarray(0, 255);
  const unpadded = 8 + 1 + text.length;
  const bye = Buffer.alloc(Math.ceil(unpadded / 4) * 4);
  bye.writeUInt8(0x81, 0);
  bye.writeUInt8(RTCP_BYE, 1);
  bye.writeUInt16BE(bye.length / 4 - 1, 2);
  bye.writeUInt32BE(ssrc, 4);
  bye.writeUInt8(text.length, 8);
  text.copy(bye, 9);
  return Buffer.concat([rr, bye]);
}

/** Whether a buffer looks like an RTCP packet (version 2, PT 200..204). */
export function isRtcp(packet: Buffer): boolean {
  if (packet.length < 4 || packet.readUInt8(0) >> 6 !== 2) return false;
  const pt = packet.readUInt8(1);
  return pt >= 200 && pt <= 204;
}
