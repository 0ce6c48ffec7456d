/**
 * MPEG-TS with MPEG-1 video, as ffmpeg writes it for jsmpeg: the byte stream cut into whole
 * 188-byte packets, and cut again where a video PES begins with a sequence header (MPEG-1 repeats
 * it before every I-frame), so a viewer can be started, or resumed after a drop, at a key frame.
 */

export const TS_PACKET = 188;
const SYNC = 0x47;

export interface TsSegment {
  data: Buffer;
  /** starts with the video PES of an I-frame (sequence header first) */
  keyframe: boolean;
}

/** Offset of the payload in a TS packet at `at`, or -1 if it has none. */
function payloadOffset(buf: Buffer, at: number): number {
  const afc = (buf[at + 3]! >> 4) & 0x3;
  if (afc === 1) return at + 4;
  if (afc === 3) {
    const off = at + 5 + buf[at + 4]!;
    return off < at + TS_PACKET ? off : -1;
  }
  return -1;
}

function indexOfStartCode(buf: Buffer, from: number, to: number, code: number): number {
  for (let i = from; i + 3 < to; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1 && buf[i + 3] === code) return i;
  }
  return -1;
}

export class TsSplitter {
  #pending: Buffer = Buffer.alloc(0);
  #videoPid = -1;
  /** picture size from the latest sequence header */
  width: number | null = null;
  height: number | null = null;

  push(chunk: Buffer): TsSegment[] {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    // Re-synchronise on a sync byte if the stream is not aligned (it is, from ffmpeg; be safe).
    let start = 0;
    while (start < buf.length && buf[start] !== SYNC) start++;
    if (start > 0) buf = buf.subarray(start);
    const whole = buf.length - (buf.length % TS_PACKET);
    this.#pending = whole === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(whole));
    if (whole === 0) return [];
    const out: TsSegment[] = [];
    let segStart = 0;
    let segKey = false;
    for (let at = 0; at < whole; at += TS_PACKET) {
      if (buf[at] !== SYNC) continue;
      const pusi = (buf[at + 1]! & 0x40) !== 0;
      if (!pusi) continue;
      const pid = ((buf[at + 1]! & 0x1f) << 8) | buf[at + 2]!;
      const p = payloadOffset(buf, at);
      if (p < 0) continue;
      const end = at + TS_PACKET;
      // A PES: 00 00 01 <stream id>; video stream ids are 0xE0–0xEF.
      const isVideoPes = buf[p] === 0 && buf[p + 1] === 0 && buf[p + 2] === 1 && (buf[p + 3]! & 0xf0) === 0xe0;
      if (!isVideoPes) continue;
      if (this.#videoPid < 0) this.#videoPid = pid;
      if (pid !== this.#videoPid) continue;
      const seq = indexOfStartCode(buf, p + 4, end, 0xb3);
      if (seq < 0) continue;
      if (seq + 7 <= end) {
        // sequence header: 12 bits horizontal size, 12 bits vertical size
        this.width = (buf[seq + 4]! << 4) | (buf[seq + 5]! >> 4);
        this.height = ((buf[seq + 5]! & 0x0f) << 8) | buf[seq + 6]!;
      }
      if (at > segStart) out.push({ data: buf.subarray(segStart, at), keyframe: segKey });
      segStart = at;
      segKey = true;
    }
    out.push({ data: buf.subarray(segStart, whole), keyframe: segKey });
    return out;
  }
}
