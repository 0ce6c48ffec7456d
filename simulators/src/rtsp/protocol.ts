/**
 * RTSP 1.0 (RFC 2326) on the wire: splitting a TCP byte stream into requests and interleaved
 * binary frames, the Transport header, responses. Pure (no sockets), so every rule is unit-tested.
 *
 * One connection carries text requests and `$`-framed binary data (the client's RTCP receiver
 * reports when it plays over TCP) in any order, split or merged across TCP segments.
 */

export const RTSP_VERSION = 'RTSP/1.0';

/** Longest request head (start line + headers) accepted before the connection is given up. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Longest request body accepted (GET_PARAMETER / SET_PARAMETER bodies are a few lines). */
export const MAX_BODY_BYTES = 64 * 1024;

export interface RtspRequest {
  method: string;
  /** as sent: `rtsp://host:port/path`, `/path` or `*` */
  uri: string;
  version: string;
  /** lower-cased names; a repeated header is joined with ", " */
  headers: Map<string, string>;
  body: Buffer;
  /** the CSeq header as a number, or undefined if absent or not a number */
  cseq: number | undefined;
}

export type RtspInput =
  | { kind: 'request'; request: RtspRequest }
  | { kind: 'interleaved'; channel: number; data: Buffer }
  /**
   * A message that cannot be served. `fatal`: the byte stream cannot be resynchronised (no end of
   * head within the limit, a bad Content-Length), so the connection must be closed after answering.
   */
  | { kind: 'bad_request'; status: number; reason: string; cseq: number | undefined; fatal: boolean };

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

/** Splits what a client sends into requests and interleaved frames. */
export class RtspRequestParser {
  #buf: Buffer = Buffer.alloc(0);
  #broken = false;

  /** Feeds bytes; returns every complete message they finish. */
  push(chunk: Buffer): RtspInput[] {
    if (this.#broken) return [];
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: RtspInput[] = [];
    for (;;) {
      // Bare line ends between messages (some clients send CRLF as a keep-alive).
      let skip = 0;
      while (skip < this.#buf.length && (this.#buf[skip] === 0x0d || this.#buf[skip] === 0x0a)) skip++;
      if (skip > 0) this.#buf = this.#buf.subarray(skip);
      if (this.#buf.length === 0) break;

      if (this.#buf[0] === 0x24 /* '$' */) {
        if (this.#buf.length < 4) break;
        const channel = this.#buf.readUInt8(1);
        const length = this.#buf.readUInt16BE(2);
        if (this.#buf.length < 4 + length) break;
        out.push({ kind: 'interleaved', channel, data: Buffer.from(this.#buf.subarray(4, 4 + length)) });
        this.#buf = this.#buf.subarray(4 + length);
        continue;
      }

      const crlf = this.#buf.indexOf(CRLFCRLF);
      const lf = this.#buf.indexOf(LFLF);
      let headEnd = -1;
      let sepLen = 0;
      if (crlf >= 0 && (lf < 0 || crlf < lf)) [headEnd, sepLen] = [crlf, 4];
      else if (lf >= 0) [headEnd, sepLen] = [lf, 2];
      if (headEnd < 0) {
        if (this.#buf.length > MAX_HEAD_BYTES) {
          out.push(this.#fatal(431, 'Request Header Fields Too Large', undefined));
        }
        break;
      }
      if (headEnd > MAX_HEAD_BYTES) {
        out.push(this.#fatal(431, 'Request Header Fields Too Large', undefined));
        break;
      }
      const head = this.#buf.subarray(0, headEnd).toString('latin1');
      const parsed = parseHead(head);
      const cseq = parsed.headers ? parseCseq(parsed.headers.get('cseq')) : undefined;
      const lengthHeader = parsed.headers?.get('content-length');
      let bodyLength = 0;
      if (lengthHeader !== undefined) {
        if (!/^\d{1,9}$/.test(lengthHeader.trim())) {
          out.push(this.#fatal(400, 'Bad Request', cseq));
          break;
        }
        bodyLength = Number(lengthHeader.trim());
        if (bodyLength > MAX_BODY_BYTES) {
          out.push(this.#fatal(413, 'Request Entity Too Large', cseq));
          break;
        }
      }
      const total = headEnd + sepLen + bodyLength;
      if (this.#buf.length < total) break;
      const body = Buffer.from(this.#buf.subarray(headEnd + sepLen, total));
      this.#buf = this.#buf.subarray(total);

      if (parsed.kind === 'response') continue; // a client answering a server request we never sent
      if (parsed.kind === 'bad') {
        out.push({ kind: 'bad_request', status: parsed.status, reason: parsed.reason, cseq, fatal: false });
        continue;
      }
      out.push({ kind: 'request', request: { ...parsed.request, body, cseq } });
    }
    return out;
  }

  #fatal(status: number, reason: string, cseq: number | undefined): RtspInput {
    this.#broken = true;
    this.#buf = Buffer.alloc(0);
    return { kind: 'bad_request', status, reason, cseq, fatal: true };
  }
}

type ParsedHead =
  | { kind: 'request'; headers: Map<string, string>; request: Omit<RtspRequest, 'body' | 'cseq'> }
  | { kind: 'response'; headers: Map<string, string> }
  | { kind: 'bad'; headers: Map<string, string> | undefined; status: number; reason: string };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseHead(head: string): ParsedHead {
  const lines = head.split(/\r?\n/);
  const startLine = lines.shift() ?? '';
  const headers = parseHeaders(lines);
  if (headers === undefined) return { kind: 'bad', headers: undefined, status: 400, reason: 'Bad Request' };
  if (startLine.startsWith('RTSP/')) return { kind: 'response', headers };
  const parts = startLine.split(' ');
  if (parts.length !== 3) return { kind: 'bad', headers, status: 400, reason: 'Bad Request' };
  const [method, uri, version] = parts as [string, string, string];
  if (!TOKEN.test(method) || uri.length === 0) return { kind: 'bad', headers, status: 400, reason: 'Bad Request' };
  if (version !== RTSP_VERSION) {
    return /^RTSP\/\d+\.\d+$/.test(version)
      ? { kind: 'bad', headers, status: 505, reason: 'RTSP Version Not Supported' }
      : { kind: 'bad', headers, status: 400, reason: 'Bad Request' };
  }
  return { kind: 'request', headers, request: { method, uri, version, headers } };
}

/** Header lines → lower-cased map; continuation lines (leading space/tab) are folded in. */
function parseHeaders(lines: string[]): Map<string, string> | undefined {
  const headers = new Map<string, string>();
  let last: string | undefined;
  for (const line of lines) {
    if (line.length === 0) continue;
    if ((line[0] === ' ' || line[0] === '\t') && last !== undefined) {
      headers.set(last, `${headers.get(last) ?? ''} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).trim();
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
    last = name;
  }
  return headers;
}

function parseCseq(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*\d{1,10}\s*$/.test(value)) return undefined;
  return Number(value);
}

// ---- Session header ------------------------------------------------------------------------------

/** `Session: 1f2e3d;timeout=60` → `1f2e3d` */
export function sessionIdOf(request: RtspRequest): string | undefined {
  const value = request.headers.get('session');
  if (value === undefined) return undefined;
  const id = value.split(';')[0]?.trim();
  return id ? id : undefined;
}

// ---- Transport header ----------------------------------------------------------------------------

export type RequestedTransport =
  | { lower: 'tcp'; interleaved: [number, number] | undefined }
  | { lower: 'udp'; clientPorts: [number, number] };

/**
 * The first transport in a SETUP's Transport header that this server can serve: unicast
 * RTP/AVP over TCP (interleaved) or over UDP (with client_port). Multicast, RTP/SAVP, a UDP
 * request without client ports and mode=record are not served; undefined means "answer 461".
 */
export function chooseTransport(header: string | undefined): RequestedTransport | undefined {
  if (header === undefined) return undefined;
  for (const spec of header.split(',')) {
    const [protocol, ...params] = spec.trim().split(';').map((s) => s.trim());
    const upper = protocol?.toUpperCase();
    let lower: 'tcp' | 'udp';
    if (upper === 'RTP/AVP/TCP') lower = 'tcp';
    else if (upper === 'RTP/AVP' || upper === 'RTP/AVP/UDP') lower = 'udp';
    else continue;
    const values = new Map<string, string | undefined>();
    for (const p of params) {
      const eq = p.indexOf('=');
      values.set((eq < 0 ? p : p.slice(0, eq)).toLowerCase(), eq < 0 ? undefined : p.slice(eq + 1).replace(/^"|"$/g, ''));
    }
    if (values.has('multicast')) continue;
    const mode = values.get('mode');
    if (mode !== undefined && mode.toUpperCase() !== 'PLAY') continue;
    if (lower === 'tcp') {
      const raw = values.get('interleaved');
      if (raw === undefined) return { lower, interleaved: undefined };
      const pair = parseRange(raw, 255);
      if (pair) return { lower, interleaved: pair };
      continue;
    }
    const raw = values.get('client_port');
    const pair = raw === undefined ? undefined : parseRange(raw, 65535);
    if (pair && pair[0] > 0) return { lower, clientPorts: pair };
  }
  return undefined;
}

/** `5000-5001` → [5000, 5001]; `5000` → [5000, 5001]. */
function parseRange(raw: string, max: number): [number, number] | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(raw.trim());
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a + 1 : Number(m[2]);
  if (a > max || b > max) return undefined;
  return [a, b];
}

// ---- responses -----------------------------------------------------------------------------------

export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  413: 'Request Entity Too Large',
  431: 'Request Header Fields Too Large',
  451: 'Parameter Not Understood',
  453: 'Not Enough Bandwidth',
  454: 'Session Not Found',
  455: 'Method Not Valid in This State',
  459: 'Aggregate Operation Not Allowed',
  461: 'Unsupported Transport',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'RTSP Version Not Supported',
  551: 'Option not supported',
};

export interface RtspResponse {
  status: number;
  /** header name → value, in order; CSeq, Date, Server and Content-Length are added */
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export function encodeResponse(res: RtspResponse, cseq: number | undefined, server: string, now = new Date()): Buffer {
  const lines = [`${RTSP_VERSION} ${res.status} ${STATUS_TEXT[res.status] ?? 'Unknown'}`];
  if (cseq !== undefined) lines.push(`CSeq: ${cseq}`);
  lines.push(`Date: ${now.toUTCString()}`, `Server: ${server}`);
  for (const [name, value] of Object.entries(res.headers ?? {})) lines.push(`${name}: ${value}`);
  const body = res.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(res.body) ? res.body : Buffer.from(res.body, 'utf8');
  if (body.length > 0) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

/** `$` + channel + length + data: one interleaved frame. */
export function interleave(channel: number, data: Buffer): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt8(0x24, 0);
  head.writeUInt8(channel, 1);
  head.writeUInt16BE(data.length, 2);
  return Buffer.concat([head, data]);
}

// ---- request URI → camera --------------------------------------------------------------------------

/** Camera ids: letters, digits, `-`, `_`, `.`; not `.` or `..`; at most 64 characters. */
export const CAMERA_ID = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}$/;

/** The stream's one track; SETUP names it `<camera>/trackID=0` (or the camera's own URL). */
export const TRACK_CONTROL = 'trackID=0';

export type StreamTarget = { cameraId: string; track: 'aggregate' | 0 };

/**
 * `rtsp://h:p/cam-0001`, `/cam-0001/`, `rtsp://h:p/cam-0001/trackID=0` → the camera and track.
 * undefined: the path names no stream (404). A query string is ignored.
 */
export function streamTargetOf(uri: string): StreamTarget | undefined {
  let path: string;
  if (uri.startsWith('/')) path = uri;
  else {
    try {
      const url = new URL(uri);
      if (url.protocol !== 'rtsp:' && url.protocol !== 'rtspt:') return undefined;
      path = url.pathname;
    } catch {
      return undefined;
    }
  }
  path = path.split('?')[0] ?? '';
  const segments = path.split('/').filter((s, i, all) => !(s === '' && (i === 0 || i === all.length - 1)));
  const [cameraId, track, ...rest] = segments;
  if (cameraId === undefined || rest.length > 0 || !CAMERA_ID.test(cameraId)) return undefined;
  if (track === undefined) return { cameraId, track: 'aggregate' };
  return track === TRACK_CONTROL ? { cameraId, track: 0 } : undefined;
}
