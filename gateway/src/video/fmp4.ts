/**
 * Fragmented MP4 (ISO/IEC 14496-12) as ffmpeg's mp4 muxer writes it with
 * `frag_keyframe+empty_moov+default_base_moof`: `ftyp`, `moov` (the init segment), then
 * `moof`+`mdat` pairs. Only what the relay needs is read: the codec string (RFC 6381, from avcC /
 * hvcC), the picture size, and per fragment its decode time (tfdt), where that field sits and
 * whether it starts with a key frame (sync sample).
 */

export interface BoxRef {
  type: string;
  /** offset of the box's first byte */
  start: number;
  /** offset of its payload (after size, type and any 64-bit size) */
  body: number;
  /** offset just past the box */
  end: number;
}

/** The boxes laid end to end in buf[start, end). Stops at a box that does not fit. */
export function* boxesIn(buf: Buffer, start = 0, end = buf.length): Generator<BoxRef> {
  let at = start;
  while (at + 8 <= end) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    let body = at + 8;
    if (size === 1) {
      if (at + 16 > end) return;
      size = Number(buf.readBigUInt64BE(at + 8));
      body = at + 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < body - at || at + size > end) return;
    yield { type, start: at, body, end: at + size };
    at += size;
  }
}

function child(buf: Buffer, parent: BoxRef, type: string, skip = 0): BoxRef | undefined {
  for (const b of boxesIn(buf, parent.body + skip, parent.end)) if (b.type === type) return b;
  return undefined;
}

function path(buf: Buffer, root: BoxRef, ...types: string[]): BoxRef | undefined {
  let at: BoxRef | undefined = root;
  for (const t of types) {
    if (!at) return undefined;
    at = child(buf, at, t);
  }
  return at;
}

/**
 * Splits a byte stream into whole top-level boxes. Chunks come as the pipe delivers them; a box
 * larger than `maxBoxBytes` means the stream is not what we think it is, and throws.
 */
export class BoxSplitter {
  #pending: Buffer = Buffer.alloc(0);
  constructor(private readonly maxBoxBytes = 32 * 1024 * 1024) {}

  push(chunk: Buffer): Array<{ type: string; data: Buffer }> {
    const buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: Array<{ type: string; data: Buffer }> = [];
    let at = 0;
    while (buf.length - at >= 8) {
      let size = buf.readUInt32BE(at);
      if (size === 1) {
        if (buf.length - at < 16) break;
        size = Number(buf.readBigUInt64BE(at + 8));
      }
      if (size < 8 || size > this.maxBoxBytes) throw new Error(`implausible MP4 box size ${size} (${buf.toString('latin1', at + 4, at + 8)})`);
      if (buf.length - at < size) break;
      out.push({ type: buf.toString('latin1', at + 4, at + 8), data: buf.subarray(at, at + size) });
      at += size;
    }
    // Keep the tail in its own buffer so the big chunk it came from can be freed.
    this.#pending = at === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at));
    return out;
  }

  get pendingBytes(): number {
    return this.#pending.length;
  }
}

export interface InitInfo {
  /** RFC 6381, e.g. `avc1.42C01E`; null for a codec this module cannot name */
  codec: string | null;
  /** the sample entry type: avc1, avc3, hvc1, hev1, … */
  sampleEntry: string | null;
  width: number | null;
  height: number | null;
  timescale: number | null;
  trackId: number | null;
  /** trex default_sample_flags of the video track (a fragment may rely on them) */
  defaultSampleFlags: number;
}

const hex2 = (n: number) => n.toString(16).toUpperCase().padStart(2, '0');

/** avc1.PPCCLL from an AVCDecoderConfigurationRecord. */
function avcCodec(entry: string, buf: Buffer, avcC: BoxRef): string | null {
  if (avcC.end - avcC.body < 4) return null;
  return `${entry}.${hex2(buf[avcC.body + 1]!)}${hex2(buf[avcC.body + 2]!)}${hex2(buf[avcC.body + 3]!)}`;
}

/** hvc1.P.C.TL.B (ISO/IEC 14496-15 annex E) from an HEVCDecoderConfigurationRecord. */
function hevcCodec(entry: string, buf: Buffer, hvcC: BoxRef): string | null {
  const b = hvcC.body;
  if (hvcC.end - b < 13) return null;
  const profileSpace = buf[b + 1]! >> 6;
  const tier = (buf[b + 1]! >> 5) & 1;
  const profile = buf[b + 1]! & 0x1f;
  const compat = buf.readUInt32BE(b + 2);
  let reversed = 0;
  for (let i = 0; i < 32; i++) if (compat & (1 << i)) reversed |= 1 << (31 - i);
  const constraints: number[] = [];
  for (let i = 0; i < 6; i++) constraints.push(buf[b + 6 + i]!);
  while (constraints.length > 0 && constraints[constraints.length - 1] === 0) constraints.pop();
  const level = buf[b + 12]!;
  const space = ['', 'A', 'B', 'C'][profileSpace] ?? '';
  const cons = constraints.map((c) => c.toString(16).toUpperCase()).join('.');
  return `${entry}.${space}${profile}.${(reversed >>> 0).toString(16).toUpperCase()}.${tier ? 'H' : 'L'}${level}${cons ? `.${cons}` : ''}`;
}

/** Reads the video track of an init segment (ftyp+moov, or just moov). */
export function parseInit(init: Buffer): InitInfo {
  const info: InitInfo = { codec: null, sampleEntry: null, width: null, height: null, timescale: null, trackId: null, defaultSampleFlags: 0 };
  let moov: BoxRef | undefined;
  for (const b of boxesIn(init)) if (b.type === 'moov') moov = b;
  if (!moov) return info;
  for (const trak of boxesIn(init, moov.body, moov.end)) {
    if (trak.type !== 'trak') continue;
    const hdlr = path(init, trak, 'mdia', 'hdlr');
    // hdlr: version/flags (4), pre_defined (4), handler_type (4)
    if (!hdlr || init.toString('latin1', hdlr.body + 8, hdlr.body + 12) !== 'vide') continue;
    const tkhd = child(init, trak, 'tkhd');
    if (tkhd) info.trackId = init.readUInt32BE(tkhd.body + (init[tkhd.body] === 1 ? 20 : 12));
    const mdhd = path(init, trak, 'mdia', 'mdhd');
    if (mdhd) info.timescale = init.readUInt32BE(mdhd.body + (init[mdhd.body] === 1 ? 20 : 12));
    const stsd = path(init, trak, 'mdia', 'minf', 'stbl', 'stsd');
    if (stsd) {
      // stsd: version/flags (4), entry_count (4), then sample entries.
      const entry = boxesIn(init, stsd.body + 8, stsd.end).next().value;
      if (entry) {
        info.sampleEntry = entry.type;
        // VisualSampleEntry: 6 reserved, 2 data_reference_index, 16 pre_defined/reserved, then width, height; children after 78 bytes.
        info.width = init.readUInt16BE(entry.body + 24);
        info.height = init.readUInt16BE(entry.body + 26);
        const config = (t: string) => child(init, entry, t, 78);
        if (entry.type === 'avc1' || entry.type === 'avc3') {
          const avcC = config('avcC');
          if (avcC) info.codec = avcCodec(entry.type, init, avcC);
        } else if (entry.type === 'hvc1' || entry.type === 'hev1') {
          const hvcC = config('hvcC');
          if (hvcC) info.codec = hevcCodec(entry.type, init, hvcC);
        }
      }
    }
    break;
  }
  const mvex = child(init, moov, 'mvex');
  if (mvex && info.trackId !== null) {
    for (const trex of boxesIn(init, mvex.body, mvex.end)) {
      // trex: version/flags, track_ID, default_sample_description_index, _duration, _size, _flags
      if (trex.type === 'trex' && init.readUInt32BE(trex.body + 4) === info.trackId) info.defaultSampleFlags = init.readUInt32BE(trex.body + 20);
    }
  }
  return info;
}

export interface FragmentInfo {
  /** baseMediaDecodeTime of the first track fragment, in the track's timescale */
  decodeTime: number;
  /** offset of the tfdt's baseMediaDecodeTime field from the start of the moof, and its width */
  decodeTimeOffset: number;
  decodeTimeBytes: 4 | 8;
  /** the fragment's first sample is a sync sample (a key frame) */
  keyframe: boolean;
  samples: number;
}

const SAMPLE_IS_NON_SYNC = 0x10000;

/** Reads a moof (a buffer starting with it; the mdat may follow). Undefined if it has no traf/tfdt. */
export function parseFragment(buf: Buffer, defaultSampleFlags = 0): FragmentInfo | undefined {
  const moof = boxesIn(buf).next().value;
  if (!moof || moof.type !== 'moof') return undefined;
  const traf = child(buf, moof, 'traf');
  if (!traf) return undefined;
  const tfhd = child(buf, traf, 'tfhd');
  const tfdt = child(buf, traf, 'tfdt');
  const trun = child(buf, traf, 'trun');
  if (!tfdt || !trun) return undefined;
  let sampleFlags = defaultSampleFlags;
  if (tfhd) {
    const flags = buf.readUInt32BE(tfhd.body) & 0xffffff;
    let at = tfhd.body + 8; // version/flags, track_ID
    if (flags & 0x1) at += 8; // base_data_offset
    if (flags & 0x2) at += 4; // sample_description_index
    if (flags & 0x8) at += 4; // default_sample_duration
    if (flags & 0x10) at += 4; // default_sample_size
    if (flags & 0x20) sampleFlags = buf.readUInt32BE(at);
  }
  const version = buf[tfdt.body]!;
  const decodeTimeBytes = version === 1 ? 8 : 4;
  const decodeTimeOffset = tfdt.body + 4;
  const decodeTime = version === 1 ? Number(buf.readBigUInt64BE(decodeTimeOffset)) : buf.readUInt32BE(decodeTimeOffset);
  const trunFlags = buf.readUInt32BE(trun.body) & 0xffffff;
  const samples = buf.readUInt32BE(trun.body + 4);
  let at = trun.body + 8;
  if (trunFlags & 0x1) at += 4; // data_offset
  if (trunFlags & 0x4) {
    sampleFlags = buf.readUInt32BE(at); // first_sample_flags
  } else if (trunFlags & 0x400 && samples > 0) {
    if (trunFlags & 0x100) at += 4;
    if (trunFlags & 0x200) at += 4;
    sampleFlags = buf.readUInt32BE(at);
  }
  return { decodeTime, decodeTimeOffset, decodeTimeBytes, keyframe: samples > 0 && (sampleFlags & SAMPLE_IS_NON_SYNC) === 0, samples };
}

/** A copy of the fragment with its tfdt set to `decodeTime` (the original stays shared by other viewers). */
export function withDecodeTime(fragment: Buffer, info: FragmentInfo, decodeTime: number): Buffer {
  const out = Buffer.from(fragment);
  if (info.decodeTimeBytes === 8) out.writeBigUInt64BE(BigInt(Math.max(0, decodeTime)), info.decodeTimeOffset);
  else out.writeUInt32BE(Math.max(0, decodeTime) >>> 0, info.decodeTimeOffset);
  return out;
}
