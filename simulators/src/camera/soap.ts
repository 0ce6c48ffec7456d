/**
 * SOAP 1.2 envelopes and faults as ONVIF devices send them. Every response declares the same
 * prefixes, so handlers write `tt:`, `tds:`, `wsnt:` … without thinking about namespaces.
 */
import { esc } from './xml.js';

export const NS = {
  env: 'http://www.w3.org/2003/05/soap-envelope',
  xs: 'http://www.w3.org/2001/XMLSchema',
  xsi: 'http://www.w3.org/2001/XMLSchema-instance',
  wsa5: 'http://www.w3.org/2005/08/addressing',
  wsnt: 'http://docs.oasis-open.org/wsn/b-2',
  wsntw: 'http://docs.oasis-open.org/wsn/bw-2',
  wstop: 'http://docs.oasis-open.org/wsn/t-1',
  'wsrf-rw': 'http://docs.oasis-open.org/wsrf/rw-2',
  tt: 'http://www.onvif.org/ver10/schema',
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  trt: 'http://www.onvif.org/ver10/media/wsdl',
  tr2: 'http://www.onvif.org/ver20/media/wsdl',
  tptz: 'http://www.onvif.org/ver20/ptz/wsdl',
  tev: 'http://www.onvif.org/ver10/events/wsdl',
  tns1: 'http://www.onvif.org/ver10/topics',
  ter: 'http://www.onvif.org/ver10/error',
} as const;

const DECLARATIONS = Object.entries(NS)
  .map(([prefix, uri]) => `xmlns:${prefix}="${uri}"`)
  .join(' ');

export const SOAP_CONTENT_TYPE = 'application/soap+xml; charset=utf-8';

/** A whole response document; `header` is raw XML (e.g. a wsa5:Action). */
export function envelope(body: string, header = ''): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<env:Envelope ${DECLARATIONS}><env:Header>${header}</env:Header><env:Body>${body}</env:Body></env:Envelope>`
  );
}

/** One `SOAP fault` a handler can throw; the server turns it into the envelope and HTTP status. */
export class SoapFault extends Error {
  constructor(
    /** `env:Sender` (the request is wrong) or `env:Receiver` (the device cannot do it) */
    readonly code: 'env:Sender' | 'env:Receiver',
    /** ONVIF subcodes, outermost first, e.g. ['ter:InvalidArgVal', 'ter:NoProfile'] */
    readonly subcodes: string[],
    readonly reason: string,
    /** HTTP status; SOAP 1.2 over HTTP: 400 for Sender faults, 500 for Receiver faults */
    readonly httpStatus: number = code === 'env:Sender' ? 400 : 500,
  ) {
    super(`${subcodes.join('/') || code}: ${reason}`);
    this.name = 'SoapFault';
  }
}

export function faultBody(fault: SoapFault): string {
  let subcode = '';
  for (let i = fault.subcodes.length - 1; i >= 0; i--) {
    subcode = `<env:Subcode><env:Value>${esc(fault.subcodes[i]!)}</env:Value>${subcode}</env:Subcode>`;
  }
  return (
    `<env:Fault><env:Code><env:Value>${fault.code}</env:Value>${subcode}</env:Code>` +
    `<env:Reason><env:Text xml:lang="en">${esc(fault.reason)}</env:Text></env:Reason></env:Fault>`
  );
}

// The faults the simulator raises, by the names the ONVIF core spec gives them.
export const faults = {
  notAuthorized: (status = 400) => new SoapFault('env:Sender', ['ter:NotAuthorized'], 'Sender not Authorized', status),
  actionNotSupported: (op: string) =>
    new SoapFault('env:Receiver', ['ter:ActionNotSupported'], `Optional Action Not Implemented: ${op}`),
  wellFormed: (why: string) => new SoapFault('env:Sender', ['ter:WellFormed'], `Malformed request: ${why}`),
  invalidArg: (sub: string, reason: string) => new SoapFault('env:Sender', ['ter:InvalidArgVal', sub], reason),
  noProfile: (token: string) =>
    new SoapFault('env:Sender', ['ter:InvalidArgVal', 'ter:NoProfile'], `No such profile: ${token}`),
  resourceUnknown: () =>
    new SoapFault('env:Sender', ['wsrf-rw:ResourceUnknownFault'], 'Subscription expired or unknown'),
} as const;
