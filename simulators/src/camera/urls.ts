/**
 * URL layout. One HTTP server serves any number of cameras, told apart by path:
 *
 *   POST /onvif/<id>/device_service    device management
 *   POST /onvif/<id>/media_service     media (Profile S)
 *   POST /onvif/<id>/media2_service    media2 (Profile T; only with `profileT`)
 *   POST /onvif/<id>/ptz_service       PTZ
 *   POST /onvif/<id>/event_service     events (GetEventProperties, CreatePullPointSubscription)
 *   POST /onvif/<id>/subscription/<n>  one pull-point subscription
 *   GET  /snapshot/<id>.jpg            JPEG snapshot
 *
 * With one camera per port, that camera also answers the paths real cameras use
 * (`/onvif/device_service`, …), so a client given only host and port finds it.
 */

export const SOAP_SERVICES = ['device', 'media', 'media2', 'ptz', 'events', 'subscription'] as const;
export type SoapService = (typeof SOAP_SERVICES)[number];

const SERVICE_SEGMENT: Record<Exclude<SoapService, 'subscription'>, string> = {
  device: 'device_service',
  media: 'media_service',
  media2: 'media2_service',
  ptz: 'ptz_service',
  events: 'event_service',
};
const SEGMENT_SERVICE = new Map(Object.entries(SERVICE_SEGMENT).map(([k, v]) => [v, k as SoapService]));

export interface CameraUrls {
  device: string;
  media: string;
  media2: string;
  ptz: string;
  events: string;
  subscription(n: number): string;
  snapshot: string;
}

/** `origin` is `http://host:port` with no trailing slash. */
export function cameraUrls(origin: string, cameraId: string): CameraUrls {
  const base = `${origin}/onvif/${encodeURIComponent(cameraId)}`;
  return {
    device: `${base}/${SERVICE_SEGMENT.device}`,
    media: `${base}/${SERVICE_SEGMENT.media}`,
    media2: `${base}/${SERVICE_SEGMENT.media2}`,
    ptz: `${base}/${SERVICE_SEGMENT.ptz}`,
    events: `${base}/${SERVICE_SEGMENT.events}`,
    subscription: (n) => `${base}/subscription/${n}`,
    snapshot: `${origin}/snapshot/${encodeURIComponent(cameraId)}.jpg`,
  };
}

export type Route =
  | { kind: 'soap'; cameraId: string | undefined; service: SoapService; subscriptionId?: number }
  | { kind: 'snapshot'; cameraId: string | undefined };

/**
 * Resolves a request path. `cameraId` is undefined for the un-prefixed paths a port-per-camera
 * server accepts (`/onvif/device_service`, `/onvif/subscription/3`, `/snapshot.jpg`).
 */
export function routeOf(pathname: string): Route | undefined {
  const parts = pathname.split('/').filter(Boolean);
  let id: string | undefined;
  try {
    if (parts[0] === 'snapshot' && parts.length === 2 && parts[1]!.endsWith('.jpg')) {
      return { kind: 'snapshot', cameraId: decodeURIComponent(parts[1]!.slice(0, -4)) };
    }
    if (parts.length === 1 && parts[0] === 'snapshot.jpg') return { kind: 'snapshot', cameraId: undefined };
    if (parts[0] !== 'onvif') return undefined;
    let rest = parts.slice(1);
    if (rest.length >= 2 && !SEGMENT_SERVICE.has(rest[0]!) && rest[0] !== 'subscription') {
      id = decodeURIComponent(rest[0]!);
      rest = rest.slice(1);
    }
    if (rest.length === 1) {
      const service = SEGMENT_SERVICE.get(rest[0]!);
      return service ? { kind: 'soap', cameraId: id, service } : undefined;
    }
    if (rest.length === 2 && rest[0] === 'subscription' && /^\d{1,9}$/.test(rest[1]!)) {
      return { kind: 'soap', cameraId: id, service: 'subscription', subscriptionId: Number(rest[1]) };
    }
  } catch {
    return undefined; // malformed percent-encoding
  }
  return undefined;
}
