import { describe, expect, it } from 'vitest';
import {
  chooseTransport,
  encodeResponse,
  interleave,
  MAX_HEAD_BYTES,
  RtspRequestParser,
  sessionIdOf,
  streamTargetOf,
  type RtspInput,
  type RtspRequest,
} from '../../simulators/src/rtsp/protocol.js';

const DESCRIBE = 'DESCRIBE rtsp://127.0.0.1:554/cam-0001 RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n';

function requestOf(input: RtspInput | undefined): RtspRequest {
  if (input?.kind !== 'request') throw new Error(`not a request: ${JSON.stringify(input)}`);
  return input.request;
}

describe('RTSP request parser', () => {
  it('parses a request: method, URI, version, lower-cased headers, CSeq', () => {
    const [input, ...rest] = new RtspRequestParser().push(Buffer.from(DESCRIBE));
    expect(rest).toEqual([]);
    const req = requestOf(input);
    expect([req.method, req.uri, req.version, req.cseq]).toEqual(['DESCRIBE', 'rtsp://127.0.0.1:554/cam-0001', 'RTSP/1.0', 2]);
    expect(req.headers.get('accept')).toBe('application/sdp');
    expect(req.body.length).toBe(0);
  });

  it('reassembles a request split at every byte', () => {
    const parser = new RtspRequestParser();
    const out: RtspInput[] = [];
    for (const byte of Buffer.from(DESCRIBE)) out.push(...parser.push(Buffer.from([byte])));
    expect(out).toHaveLength(1);
    expect(requestOf(out[0]).cseq).toBe(2);
  });

  it('splits merged requests and interleaved frames, in order, whatever the TCP segmentation', () => {
    const rtcp = Buffer.from([0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    const body = 'position\r\n';
    const stream = Buffer.concat([
      Buffer.from('\r\n'), // a stray keep-alive line end
      Buffer.from(`GET_PARAMETER rtsp://h/cam-0001 RTSP/1.0\r\nCSeq: 7\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
      interleave(1, rtcp),
      Buffer.from(DESCRIBE),
    ]);
    for (const cut of [1, 3, 17, 64, stream.length]) {
      const parser = new RtspRequestParser();
      const out: RtspInput[] = [];
      for (let at = 0; at < stream.length; at += cut) out.push(...parser.push(stream.subarray(at, at + cut)));
      expect(out.map((i) => i.kind), `cut ${cut}`).toEqual(['request', 'interleaved', 'request']);
      expect(requestOf(out[0]).body.toString()).toBe(body);
      expect(out[1]).toEqual({ kind: 'interleaved', channel: 1, data: rtcp });
      expect(requestOf(out[2]).method).toBe('DESCRIBE');
    }
  });

  it('accepts bare LF line ends and folded header lines', () => {
    const req = requestOf(new RtspRequestParser().push(Buffer.from('OPTIONS * RTSP/1.0\nCSeq: 1\nX-Long: a\n  b\n\n'))[0]);
    expect(req.uri).toBe('*');
    expect(req.headers.get('x-long')).toBe('a b');
  });

  it('answers malformed requests without losing the connection', () => {
    const parser = new RtspRequestParser();
    const out = parser.push(Buffer.from(`GARBAGE\r\n\r\nDESCRIBE /x RTSP/1.0\r\nbad header\r\nCSeq: 9\r\n\r\nPLAY /x RTSP/2.0\r\nCSeq: 10\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n${DESCRIBE}`));
    expect(out.map((i) => (i.kind === 'bad_request' ? [i.status, i.cseq, i.fatal] : i.kind))).toEqual([
      [400, undefined, false],
      [400, undefined, false], // the headers could not be read, so neither could CSeq
      [505, 10, false],
      [400, undefined, false],
      'request',
    ]);
  });

  it('gives up on a head that never ends or a bad Content-Length (the stream cannot be resynchronised)', () => {
    const long = new RtspRequestParser();
    expect(long.push(Buffer.from(`OPTIONS * RTSP/1.0\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}`))).toEqual([
      { kind: 'bad_request', status: 431, reason: 'Request Header Fields Too Large', cseq: undefined, fatal: true },
    ]);
    expect(long.push(Buffer.from(DESCRIBE))).toEqual([]); // nothing more is read from it
    const badLength = new RtspRequestParser().push(Buffer.from('OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nContent-Length: -1\r\n\r\n'));
    expect(badLength).toEqual([{ kind: 'bad_request', status: 400, reason: 'Bad Request', cseq: 3, fatal: true }]);
  });

  it('ignores responses a client sends (to requests this server never makes)', () => {
    const out = new RtspRequestParser().push(Buffer.from(`RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 2\r\n\r\nhi${DESCRIBE}`));
    expect(out.map((i) => i.kind)).toEqual(['request']);
  });

  it('reads the session id without its parameters', () => {
    const req = requestOf(new RtspRequestParser().push(Buffer.from('PLAY /c RTSP/1.0\r\nCSeq: 4\r\nSession: 0a1b2c;timeout=60\r\n\r\n'))[0]);
    expect(sessionIdOf(req)).toBe('0a1b2c');
  });
});

describe('Transport header', () => {
  it('TCP interleaved, with or without channels', () => {
    expect(chooseTransport('RTP/AVP/TCP;unicast;interleaved=2-3')).toEqual({ lower: 'tcp', interleaved: [2, 3] });
    expect(chooseTransport('RTP/AVP/TCP;unicast')).toEqual({ lower: 'tcp', interleaved: undefined });
    expect(chooseTransport('RTP/AVP/TCP;unicast;interleaved=4')).toEqual({ lower: 'tcp', interleaved: [4, 5] });
  });

  it('UDP unicast needs client_port', () => {
    expect(chooseTransport('RTP/AVP;unicast;client_port=5000-5001')).toEqual({ lower: 'udp', clientPorts: [5000, 5001] });
    expect(chooseTransport('RTP/AVP/UDP;unicast;client_port=6000')).toEqual({ lower: 'udp', clientPorts: [6000, 6001] });
    expect(chooseTransport('RTP/AVP;unicast')).toBeUndefined();
  });

  it('takes the first alternative it can serve; multicast, SAVP and record are not served', () => {
    expect(chooseTransport('RTP/AVP;multicast;port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1')).toEqual({ lower: 'tcp', interleaved: [0, 1] });
    expect(chooseTransport('RTP/SAVP;unicast;client_port=5000-5001')).toBeUndefined();
    expect(chooseTransport('RTP/AVP/TCP;unicast;mode=record')).toBeUndefined();
    expect(chooseTransport('RTP/AVP/TCP;unicast;mode="PLAY"')).toEqual({ lower: 'tcp', interleaved: undefined });
    expect(chooseTransport('RTP/AVP/TCP;interleaved=300-301')).toBeUndefined();
    expect(chooseTransport(undefined)).toBeUndefined();
  });
});

describe('stream paths', () => {
  it('maps URLs to a camera and its one track', () => {
    expect(streamTargetOf('rtsp://127.0.0.1:554/cam-0001')).toEqual({ cameraId: 'cam-0001', track: 'aggregate' });
    expect(streamTargetOf('rtsp://127.0.0.1:554/cam-0001/')).toEqual({ cameraId: 'cam-0001', track: 'aggregate' });
    expect(streamTargetOf('rtsp://[::1]:554/cam-0001/trackID=0')).toEqual({ cameraId: 'cam-0001', track: 0 });
    expect(streamTargetOf('/cam_7.b?x=1')).toEqual({ cameraId: 'cam_7.b', track: 'aggregate' });
  });

  it('rejects paths that name no stream', () => {
    for (const uri of ['*', 'rtsp://h/', 'rtsp://h/a/b/c', 'rtsp://h/cam-0001/trackID=1', 'rtsp://h/..', 'rtsp://h/cam%200001', 'http://h/cam-0001', 'rtsp://h//cam-0001', `/${'a'.repeat(65)}`]) {
      expect(streamTargetOf(uri), uri).toBeUndefined();
    }
  });
});

describe('responses', () => {
  it('status line, CSeq echo, Date, Server, headers, Content-Length and body', () => {
    const text = encodeResponse({ status: 454, headers: { Session: 'abc' }, body: 'x' }, 12, 'test', new Date(0)).toString();
    expect(text).toBe('RTSP/1.0 454 Session Not Found\r\nCSeq: 12\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: test\r\nSession: abc\r\nContent-Length: 1\r\n\r\nx');
  });

  it('interleaved frames: $, channel, 16-bit length', () => {
    expect(interleave(3, Buffer.from([1, 2, 3]))).toEqual(Buffer.from([0x24, 3, 0, 3, 1, 2, 3]));
  });
});
