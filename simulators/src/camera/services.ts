/**
 * The ONVIF operations, one handler per (service, operation). A handler gets the camera and the
 * parsed operation element and returns the response body (or throws a SoapFault); the server
 * (fleet.ts) does HTTP, authentication and the envelope.
 */
import type { SimCameraImpl } from './camera.js';
import { VIDEO_SOURCE_CONFIG_TOKEN, VIDEO_SOURCE_TOKEN } from './camera.js';
import { CONCRETE_SET, topicFilter } from './events.js';
import { bearingToPanX, type PtzPreset } from './ptz.js';
import { faults, SoapFault } from './soap.js';
import { cameraUrls, type CameraUrls, type SoapService } from './urls.js';
import { ALARM_KINDS, MOTION_TOPIC, type AlarmTopic } from './vendors.js';
import {
  child,
  children,
  el,
  esc,
  numAttr,
  parseDuration,
  parseTerminationTime,
  textAt,
  utcSeconds,
  type XmlElement,
} from './xml.js';

export interface EventLimits {
  /** PullMessages Timeout above this is shortened to it (many cameras cap at 60 s) */
  maxPullTimeoutMs: number;
  maxMessageLimit: number;
  /** subscription lifetime when the client gives no InitialTerminationTime */
  defaultSubscriptionTtlMs: number;
  /** longest lifetime granted by Create/Renew */
  maxSubscriptionTtlMs: number;
  /** pull points one camera keeps at once */
  maxSubscriptionsPerCamera: number;
}

/** What handlers need from the fleet. */
export interface FleetServices {
  streamUrlFor(cameraId: string): string;
  profileT: boolean;
  events: EventLimits;
  /** how long SystemReboot keeps the camera down */
  rebootMs: number;
  scopes(camera: SimCameraImpl): string[];
}

export interface ServiceRequest {
  camera: SimCameraImpl;
  op: XmlElement;
  /** `http://host:port` as the client reached us */
  origin: string;
  fleet: FleetServices;
  /** aborts when the client hangs up */
  signal: AbortSignal;
  subscriptionId?: number;
}

export interface SoapReply {
  body: string;
  /** wsa:Action of the response, when the spec names one */
  action?: string;
  /** run after the response is written (e.g. the reboot) */
  after?: () => void;
}

type Handler = (r: ServiceRequest) => string | SoapReply | Promise<string | SoapReply>;

// ---- shared building blocks --------------------------------------------------------------------

const WIDTH = 640;
const HEIGHT = 360;
const FPS = 15;
const BITRATE_KBPS = 512;
export const PROFILE_TOKEN = 'Profile_1';
const ENCODER_TOKEN = 'VideoEncoderConfig_1';
const PTZ_CONFIG_TOKEN = 'PTZConfig_1';
const PTZ_NODE_TOKEN = 'PTZNode_1';

const SPACE = {
  absPanTilt: 'http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace',
  absZoom: 'http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace',
  relPanTilt: 'http://www.onvif.org/ver10/tptz/PanTiltSpaces/TranslationGenericSpace',
  relZoom: 'http://www.onvif.org/ver10/tptz/ZoomSpaces/TranslationGenericSpace',
  velPanTilt: 'http://www.onvif.org/ver10/tptz/PanTiltSpaces/VelocityGenericSpace',
  velZoom: 'http://www.onvif.org/ver10/tptz/ZoomSpaces/VelocityGenericSpace',
  speedPanTilt: 'http://www.onvif.org/ver10/tptz/PanTiltSpaces/GenericSpeedSpace',
  speedZoom: 'http://www.onvif.org/ver10/tptz/ZoomSpaces/ZoomGenericSpeedSpace',
} as const;
const DEFAULT_PTZ_TIMEOUT = 'PT30S';

/** A number as ONVIF clients parse it: plain decimal, no exponent, at most 6 decimals. */
export function num(v: number): string {
  return String(Number(v.toFixed(6)));
}
const range = (min: number, max: number) => `<tt:Min>${min}</tt:Min><tt:Max>${max}</tt:Max>`;

function urlsOf(r: ServiceRequest): CameraUrls {
  return cameraUrls(r.origin, r.camera.id);
}

function requireProfile(op: XmlElement): void {
  const token = textAt(op, 'ProfileToken');
  if (token !== undefined && token !== PROFILE_TOKEN) throw faults.noProfile(token);
}

function videoSourceConfiguration(tag: string): string {
  return (
    `<${tag} token="${VIDEO_SOURCE_CONFIG_TOKEN}">${el('tt:Name', VIDEO_SOURCE_CONFIG_TOKEN)}<tt:UseCount>1</tt:UseCount>` +
    `${el('tt:SourceToken', VIDEO_SOURCE_TOKEN)}<tt:Bounds x="0" y="0" width="${WIDTH}" height="${HEIGHT}"/></${tag}>`
  );
}

function resolution(): string {
  return `<tt:Resolution><tt:Width>${WIDTH}</tt:Width><tt:Height>${HEIGHT}</tt:Height></tt:Resolution>`;
}

function videoEncoderConfiguration(tag: string): string {
  return (
    `<${tag} token="${ENCODER_TOKEN}">${el('tt:Name', ENCODER_TOKEN)}<tt:UseCount>1</tt:UseCount>` +
    `<tt:Encoding>H264</tt:Encoding>${resolution()}<tt:Quality>4</tt:Quality>` +
    `<tt:RateControl><tt:FrameRateLimit>${FPS}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>` +
    `<tt:BitrateLimit>${BITRATE_KBPS}</tt:BitrateLimit></tt:RateControl>` +
    `<tt:H264><tt:GovLength>${FPS * 2}</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>` +
    `<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address>` +
    `<tt:Port>0</tt:Port><tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>` +
    `<tt:SessionTimeout>PT60S</tt:SessionTimeout></${tag}>`
  );
}

function ptzConfiguration(tag: string): string {
  return (
    `<${tag} token="${PTZ_CONFIG_TOKEN}">${el('tt:Name', PTZ_CONFIG_TOKEN)}<tt:UseCount>1</tt:UseCount>` +
    el('tt:NodeToken', PTZ_NODE_TOKEN) +
    // "Pant" is how the ONVIF schema spells this element.
    el('tt:DefaultAbsolutePantTiltPositionSpace', SPACE.absPanTilt) +
    el('tt:DefaultAbsoluteZoomPositionSpace', SPACE.absZoom) +
    el('tt:DefaultRelativePanTiltTranslationSpace', SPACE.relPanTilt) +
    el('tt:DefaultRelativeZoomTranslationSpace', SPACE.relZoom) +
    el('tt:DefaultContinuousPanTiltVelocitySpace', SPACE.velPanTilt) +
    el('tt:DefaultContinuousZoomVelocitySpace', SPACE.velZoom) +
    `<tt:DefaultPTZSpeed><tt:PanTilt x="1" y="1" space="${SPACE.speedPanTilt}"/><tt:Zoom x="1" space="${SPACE.speedZoom}"/></tt:DefaultPTZSpeed>` +
    el('tt:DefaultPTZTimeout', DEFAULT_PTZ_TIMEOUT) +
    `<tt:PanTiltLimits><tt:Range>${el('tt:URI', SPACE.absPanTilt)}<tt:XRange>${range(-1, 1)}</tt:XRange><tt:YRange>${range(-1, 1)}</tt:YRange></tt:Range></tt:PanTiltLimits>` +
    `<tt:ZoomLimits><tt:Range>${el('tt:URI', SPACE.absZoom)}<tt:XRange>${range(0, 1)}</tt:XRange></tt:Range></tt:ZoomLimits>` +
    `</${tag}>`
  );
}

function ptzSpaces(): string {
  const xy = (tag: string, uri: string, xmin: number, ymin: number) =>
    `<tt:${tag}>${el('tt:URI', uri)}<tt:XRange>${range(xmin, 1)}</tt:XRange><tt:YRange>${range(ymin, 1)}</tt:YRange></tt:${tag}>`;
  const x = (tag: string, uri: string, xmin: number) => `<tt:${tag}>${el('tt:URI', uri)}<tt:XRange>${range(xmin, 1)}</tt:XRange></tt:${tag}>`;
  return (
    xy('AbsolutePanTiltPositionSpace', SPACE.absPanTilt, -1, -1) +
    x('AbsoluteZoomPositionSpace', SPACE.absZoom, 0) +
    xy('RelativePanTiltTranslationSpace', SPACE.relPanTilt, -1, -1) +
    x('RelativeZoomTranslationSpace', SPACE.relZoom, -1) +
    xy('ContinuousPanTiltVelocitySpace', SPACE.velPanTilt, -1, -1) +
    x('ContinuousZoomVelocitySpace', SPACE.velZoom, -1) +
    x('PanTiltSpeedSpace', SPACE.speedPanTilt, 0) +
    x('ZoomSpeedSpace', SPACE.speedZoom, 0)
  );
}

function profile(tag: string): string {
  return (
    `<${tag} token="${PROFILE_TOKEN}" fixed="true"><tt:Name>MainStream</tt:Name>` +
    videoSourceConfiguration('tt:VideoSourceConfiguration') +
    videoEncoderConfiguration('tt:VideoEncoderConfiguration') +
    ptzConfiguration('tt:PTZConfiguration') +
    `</${tag}>`
  );
}

function mediaUri(uri: string): string {
  return `<trt:MediaUri>${el('tt:Uri', uri)}<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>`;
}

function streamUri(r: ServiceRequest): string {
  try {
    return r.fleet.streamUrlFor(r.camera.id);
  } catch (err) {
    throw new SoapFault('env:Receiver', ['ter:Action'], `No stream: ${(err as Error).message}`);
  }
}

function dateTime(ms: number): string {
  const d = new Date(ms);
  return (
    `<tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
    `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date>`
  );
}

// ---- device ------------------------------------------------------------------------------------

const DEVICE_CAPABILITIES =
  `<tds:Network IPFilter="false" ZeroConfiguration="false" IPVersion6="false" DynDNS="false" Dot11Configuration="false" HostnameFromDHCP="false" NTP="1"/>` +
  `<tds:Security TLS1.0="false" TLS1.1="false" TLS1.2="false" OnboardKeyGeneration="false" AccessPolicyConfig="false" DefaultAccessPolicy="false" Dot1X="false" RemoteUserHandling="false" X.509Token="false" SAMLToken="false" KerberosToken="false" UsernameToken="true" HttpDigest="true" RELToken="false" MaxUsers="8" MaxUserNameLength="32" MaxPasswordLength="32"/>` +
  `<tds:System DiscoveryResolve="false" DiscoveryBye="false" RemoteDiscovery="false" SystemBackup="false" SystemLogging="false" FirmwareUpgrade="false" HttpFirmwareUpgrade="false" HttpSystemBackup="false" HttpSystemLogging="false" HttpSupportInformation="false" StorageConfiguration="false"/>`;
const MEDIA_CAPABILITIES =
  `<trt:Capabilities SnapshotUri="true" Rotation="false" VideoSourceMode="false" OSD="false" EXICompression="false">` +
  `<trt:ProfileCapabilities MaximumNumberOfProfiles="1"/>` +
  `<trt:StreamingCapabilities RTPMulticast="false" RTP_TCP="true" RTP_RTSP_TCP="true" NonAggregateControl="false" NoRTSPStreaming="false"/></trt:Capabilities>`;
const MEDIA2_CAPABILITIES =
  `<tr2:Capabilities SnapshotUri="true" Rotation="false" VideoSourceMode="false" OSD="false" Mask="false" SourceMask="false">` +
  `<tr2:ProfileCapabilities MaximumNumberOfProfiles="1" ConfigurationsSupported="VideoSource VideoEncoder PTZ"/>` +
  `<tr2:StreamingCapabilities RTSPStreaming="true" RTPMulticast="false" RTP_RTSP_TCP="true" NonAggregateControl="false" AutoStartMulticast="false"/></tr2:Capabilities>`;
const PTZ_CAPABILITIES = `<tptz:Capabilities EFlip="false" Reverse="false" GetCompatibleConfigurations="false" MoveStatus="true" StatusPosition="true"/>`;
function eventCapabilities(r: ServiceRequest): string {
  return `<tev:Capabilities WSSubscriptionPolicySupport="false" WSPullPointSupport="true" WSPausableSubscriptionManagerInterfaceSupport="false" MaxNotificationProducers="0" MaxPullPoints="${r.fleet.events.maxSubscriptionsPerCamera}" PersistentNotificationStorage="false"/>`;
}

function service(namespace: string, xaddr: string, capabilities: string | undefined, major: number, minor: number): string {
  return (
    `<tds:Service>${el('tds:Namespace', namespace)}${el('tds:XAddr', xaddr)}` +
    (capabilities !== undefined ? `<tds:Capabilities>${capabilities}</tds:Capabilities>` : '') +
    `<tds:Version><tt:Major>${major}</tt:Major><tt:Minor>${minor}</tt:Minor></tds:Version></tds:Service>`
  );
}

const device: Record<string, Handler> = {
  GetSystemDateAndTime: (r) => {
    const now = r.camera.clock();
    return (
      `<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>` +
      `<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>` +
      `<tt:UTCDateTime>${dateTime(now)}</tt:UTCDateTime><tt:LocalDateTime>${dateTime(now + 8 * 3600_000)}</tt:LocalDateTime>` +
      `</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`
    );
  },
  GetServices: (r) => {
    const withCaps = textAt(r.op, 'IncludeCapability') === 'true';
    const u = urlsOf(r);
    const caps = (c: string) => (withCaps ? c : undefined);
    return (
      `<tds:GetServicesResponse>` +
      service('http://www.onvif.org/ver10/device/wsdl', u.device, caps(`<tds:Capabilities>${DEVICE_CAPABILITIES}</tds:Capabilities>`), 2, 60) +
      service('http://www.onvif.org/ver10/media/wsdl', u.media, caps(MEDIA_CAPABILITIES), 2, 60) +
      (r.fleet.profileT ? service('http://www.onvif.org/ver20/media/wsdl', u.media2, caps(MEDIA2_CAPABILITIES), 2, 60) : '') +
      service('http://www.onvif.org/ver20/ptz/wsdl', u.ptz, caps(PTZ_CAPABILITIES), 2, 60) +
      service('http://www.onvif.org/ver10/events/wsdl', u.events, caps(eventCapabilities(r)), 2, 60) +
      `</tds:GetServicesResponse>`
    );
  },
  GetServiceCapabilities: () =>
    `<tds:GetServiceCapabilitiesResponse><tds:Capabilities>${DEVICE_CAPABILITIES}</tds:Capabilities></tds:GetServiceCapabilitiesResponse>`,
  GetCapabilities: (r) => {
    const asked = children(r.op, 'Category').map((c) => c.text);
    const want = (c: string) => asked.length === 0 || asked.includes('All') || asked.includes(c);
    const u = urlsOf(r);
    let body = '';
    if (want('Device')) {
      body +=
        `<tt:Device>${el('tt:XAddr', u.device)}` +
        `<tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false</tt:ZeroConfiguration><tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS></tt:Network>` +
        `<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve><tt:DiscoveryBye>false</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery>` +
        `<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging><tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>` +
        `<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tt:SupportedVersions></tt:System>` +
        `<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2><tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration>` +
        `<tt:AccessPolicyConfig>false</tt:AccessPolicyConfig><tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false</tt:SAMLToken>` +
        `<tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken></tt:Security></tt:Device>`;
    }
    if (want('Events')) {
      body +=
        `<tt:Events>${el('tt:XAddr', u.events)}<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>` +
        `<tt:WSPullPointSupport>true</tt:WSPullPointSupport><tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>`;
    }
    if (want('Media')) {
      body +=
        `<tt:Media>${el('tt:XAddr', u.media)}<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>` +
        `<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>`;
    }
    if (want('PTZ')) body += `<tt:PTZ>${el('tt:XAddr', u.ptz)}</tt:PTZ>`;
    if (body === '') throw new SoapFault('env:Receiver', ['ter:ActionNotSupported', 'ter:NoSuchService'], `No such category: ${asked.join(', ')}`);
    return `<tds:GetCapabilitiesResponse><tds:Capabilities>${body}</tds:Capabilities></tds:GetCapabilitiesResponse>`;
  },
  GetDeviceInformation: (r) => {
    const v = r.camera.vendor;
    return (
      `<tds:GetDeviceInformationResponse>${el('tds:Manufacturer', v.manufacturer)}${el('tds:Model', v.model)}` +
      `${el('tds:FirmwareVersion', v.firmwareVersion)}${el('tds:SerialNumber', r.camera.serialNumber)}${el('tds:HardwareId', v.hardwareId)}` +
      `</tds:GetDeviceInformationResponse>`
    );
  },
  GetScopes: (r) =>
    `<tds:GetScopesResponse>${r.fleet
      .scopes(r.camera)
      .map((s) => `<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef>${el('tt:ScopeItem', s)}</tds:Scopes>`)
      .join('')}</tds:GetScopesResponse>`,
  GetHostname: (r) =>
    `<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>${el('tt:Name', r.camera.id)}</tds:HostnameInformation></tds:GetHostnameResponse>`,
  GetNetworkInterfaces: (r) => {
    const host = new URL(r.origin).hostname.replace(/^\[|\]$/g, '');
    return (
      `<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0"><tt:Enabled>true</tt:Enabled>` +
      `<tt:Info><tt:Name>eth0</tt:Name>${el('tt:HwAddress', r.camera.macAddress)}<tt:MTU>1500</tt:MTU></tt:Info>` +
      `<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual>${el('tt:Address', host)}<tt:PrefixLength>24</tt:PrefixLength></tt:Manual>` +
      `<tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4></tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>`
    );
  },
  SystemReboot: (r) => ({
    body: `<tds:SystemRebootResponse>${el('tds:Message', `Rebooting in ${Math.ceil(r.fleet.rebootMs / 1000)} seconds`)}</tds:SystemRebootResponse>`,
    after: () => r.camera.reboot(r.fleet.rebootMs),
  }),
};

// ---- media (ver10) -----------------------------------------------------------------------------

const media: Record<string, Handler> = {
  GetServiceCapabilities: () => `<trt:GetServiceCapabilitiesResponse>${MEDIA_CAPABILITIES}</trt:GetServiceCapabilitiesResponse>`,
  GetProfiles: () => `<trt:GetProfilesResponse>${profile('trt:Profiles')}</trt:GetProfilesResponse>`,
  GetProfile: (r) => {
    requireProfile(r.op);
    return `<trt:GetProfileResponse>${profile('trt:Profile')}</trt:GetProfileResponse>`;
  },
  GetVideoSources: () =>
    `<trt:GetVideoSourcesResponse><trt:VideoSources token="${VIDEO_SOURCE_TOKEN}"><tt:Framerate>${FPS}</tt:Framerate>${resolution()}</trt:VideoSources></trt:GetVideoSourcesResponse>`,
  GetVideoSourceConfigurations: () =>
    `<trt:GetVideoSourceConfigurationsResponse>${videoSourceConfiguration('trt:Configurations')}</trt:GetVideoSourceConfigurationsResponse>`,
  GetVideoSourceConfiguration: () =>
    `<trt:GetVideoSourceConfigurationResponse>${videoSourceConfiguration('trt:Configuration')}</trt:GetVideoSourceConfigurationResponse>`,
  GetVideoEncoderConfigurations: () =>
    `<trt:GetVideoEncoderConfigurationsResponse>${videoEncoderConfiguration('trt:Configurations')}</trt:GetVideoEncoderConfigurationsResponse>`,
  GetVideoEncoderConfiguration: (r) => {
    const token = textAt(r.op, 'ConfigurationToken');
    if (token !== undefined && token !== ENCODER_TOKEN) throw faults.invalidArg('ter:NoConfig', `No such configuration: ${token}`);
    return `<trt:GetVideoEncoderConfigurationResponse>${videoEncoderConfiguration('trt:Configuration')}</trt:GetVideoEncoderConfigurationResponse>`;
  },
  GetStreamUri: (r) => {
    requireProfile(r.op);
    const protocol = textAt(r.op, 'StreamSetup', 'Transport', 'Protocol');
    if (textAt(r.op, 'StreamSetup', 'Stream') === 'RTP-Multicast') {
      throw new SoapFault('env:Receiver', ['ter:ActionNotSupported', 'ter:IncompatibleConfiguration'], 'Multicast is not supported');
    }
    if (protocol !== undefined && !['RTSP', 'TCP', 'UDP', 'HTTP'].includes(protocol)) {
      throw faults.invalidArg('ter:InvalidStreamSetup', `Unknown transport ${protocol}`);
    }
    return `<trt:GetStreamUriResponse>${mediaUri(streamUri(r))}</trt:GetStreamUriResponse>`;
  },
  GetSnapshotUri: (r) => {
    requireProfile(r.op);
    return `<trt:GetSnapshotUriResponse>${mediaUri(urlsOf(r).snapshot)}</trt:GetSnapshotUriResponse>`;
  },
  SetSynchronizationPoint: (r) => {
    requireProfile(r.op);
    return '<trt:SetSynchronizationPointResponse/>';
  },
};

// ---- media2 (ver20, Profile T) -----------------------------------------------------------------

function media2Profile(): string {
  return (
    `<tr2:Profiles token="${PROFILE_TOKEN}" fixed="true"><tr2:Name>MainStream</tr2:Name><tr2:Configurations>` +
    videoSourceConfiguration('tr2:VideoSource') +
    `<tr2:VideoEncoder token="${ENCODER_TOKEN}" GovLength="${FPS * 2}" Profile="Main">${el('tt:Name', ENCODER_TOKEN)}<tt:UseCount>1</tt:UseCount>` +
    `<tt:Encoding>H264</tt:Encoding>${resolution()}<tt:RateControl ConstantBitRate="false"><tt:FrameRateLimit>${FPS}</tt:FrameRateLimit>` +
    `<tt:BitrateLimit>${BITRATE_KBPS}</tt:BitrateLimit></tt:RateControl><tt:Quality>4</tt:Quality></tr2:VideoEncoder>` +
    ptzConfiguration('tr2:PTZ') +
    `</tr2:Configurations></tr2:Profiles>`
  );
}

const media2: Record<string, Handler> = {
  GetServiceCapabilities: () => `<tr2:GetServiceCapabilitiesResponse>${MEDIA2_CAPABILITIES}</tr2:GetServiceCapabilitiesResponse>`,
  GetProfiles: (r) => {
    const token = textAt(r.op, 'Token');
    if (token !== undefined && token !== PROFILE_TOKEN) throw faults.noProfile(token);
    return `<tr2:GetProfilesResponse>${media2Profile()}</tr2:GetProfilesResponse>`;
  },
  GetVideoSourceConfigurations: () =>
    `<tr2:GetVideoSourceConfigurationsResponse>${videoSourceConfiguration('tr2:Configurations')}</tr2:GetVideoSourceConfigurationsResponse>`,
  GetStreamUri: (r) => {
    requireProfile(r.op);
    const protocol = textAt(r.op, 'Protocol') ?? 'RTSP';
    if (protocol === 'RtspMulticast') {
      throw new SoapFault('env:Receiver', ['ter:ActionNotSupported', 'ter:IncompatibleConfiguration'], 'Multicast is not supported');
    }
    return `<tr2:GetStreamUriResponse>${el('tr2:Uri', streamUri(r))}</tr2:GetStreamUriResponse>`;
  },
  GetSnapshotUri: (r) => {
    requireProfile(r.op);
    return `<tr2:GetSnapshotUriResponse>${el('tr2:Uri', urlsOf(r).snapshot)}</tr2:GetSnapshotUriResponse>`;
  },
  SetSynchronizationPoint: () => '<tr2:SetSynchronizationPointResponse/>',
};

// ---- PTZ ---------------------------------------------------------------------------------------

function vector(op: XmlElement | undefined): { x?: number; y?: number; zoom?: number } {
  const pt = child(op, 'PanTilt');
  const z = child(op, 'Zoom');
  const out: { x?: number; y?: number; zoom?: number } = {};
  const x = numAttr(pt, 'x');
  const y = numAttr(pt, 'y');
  const zoom = numAttr(z, 'x');
  if (pt && (x === undefined || y === undefined)) throw faults.invalidArg('ter:InvalidPosition', 'PanTilt needs numeric x and y');
  if (z && zoom === undefined) throw faults.invalidArg('ter:InvalidPosition', 'Zoom needs a numeric x');
  if (x !== undefined) out.x = x;
  if (y !== undefined) out.y = y;
  if (zoom !== undefined) out.zoom = zoom;
  return out;
}

function checkRange(v: { x?: number; y?: number; zoom?: number }, zoomMin: number, sub: string): void {
  const bad = (n: number | undefined, lo: number, hi: number) => n !== undefined && (n < lo || n > hi);
  if (bad(v.x, -1, 1) || bad(v.y, -1, 1) || bad(v.zoom, zoomMin, 1)) throw faults.invalidArg(sub, 'Value outside the space');
}

function presetXml(p: PtzPreset, headingDeg: number): string {
  return (
    `<tptz:Preset token="${esc(p.token)}">${el('tt:Name', p.name)}<tt:PTZPosition>` +
    `<tt:PanTilt x="${num(bearingToPanX(p.bearingDeg, headingDeg))}" y="${num(p.tiltDeg / 90)}" space="${SPACE.absPanTilt}"/>` +
    `<tt:Zoom x="${num(p.zoom)}" space="${SPACE.absZoom}"/></tt:PTZPosition></tptz:Preset>`
  );
}

function gotoBearing(r: ServiceRequest, target: { bearingDeg: number; tiltDeg: number; zoom: number }): void {
  const speed = vector(child(r.op, 'Speed'));
  r.camera.ptz.absoluteMove(
    { x: bearingToPanX(target.bearingDeg, r.camera.headingDeg), y: target.tiltDeg / 90, zoom: target.zoom },
    { ...(speed.x !== undefined ? { x: Math.abs(speed.x) } : {}), ...(speed.y !== undefined ? { y: Math.abs(speed.y) } : {}), ...(speed.zoom !== undefined ? { zoom: Math.abs(speed.zoom) } : {}) },
  );
}

const ptz: Record<string, Handler> = {
  GetServiceCapabilities: () => `<tptz:GetServiceCapabilitiesResponse>${PTZ_CAPABILITIES}</tptz:GetServiceCapabilitiesResponse>`,
  GetNodes: () => `<tptz:GetNodesResponse>${ptzNode()}</tptz:GetNodesResponse>`,
  GetNode: (r) => {
    const token = textAt(r.op, 'NodeToken');
    if (token !== PTZ_NODE_TOKEN) throw faults.invalidArg('ter:NoEntity', `No such PTZ node: ${token ?? ''}`);
    return `<tptz:GetNodeResponse>${ptzNode('tptz:PTZNode')}</tptz:GetNodeResponse>`;
  },
  GetConfigurations: () => `<tptz:GetConfigurationsResponse>${ptzConfiguration('tptz:PTZConfiguration')}</tptz:GetConfigurationsResponse>`,
  GetConfiguration: (r) => {
    const token = textAt(r.op, 'PTZConfigurationToken');
    if (token !== PTZ_CONFIG_TOKEN) throw faults.invalidArg('ter:NoConfig', `No such PTZ configuration: ${token ?? ''}`);
    return `<tptz:GetConfigurationResponse>${ptzConfiguration('tptz:PTZConfiguration')}</tptz:GetConfigurationResponse>`;
  },
  GetConfigurationOptions: (r) => {
    const token = textAt(r.op, 'ConfigurationToken');
    if (token !== PTZ_CONFIG_TOKEN) throw faults.invalidArg('ter:NoConfig', `No such PTZ configuration: ${token ?? ''}`);
    return (
      `<tptz:GetConfigurationOptionsResponse><tptz:PTZConfigurationOptions><tt:Spaces>${ptzSpaces()}</tt:Spaces>` +
      `<tt:PTZTimeout><tt:Min>PT1S</tt:Min><tt:Max>PT600S</tt:Max></tt:PTZTimeout></tptz:PTZConfigurationOptions></tptz:GetConfigurationOptionsResponse>`
    );
  },
  GetPresets: (r) => {
    requireProfile(r.op);
    return `<tptz:GetPresetsResponse>${r.camera.presets.map((p) => presetXml(p, r.camera.headingDeg)).join('')}</tptz:GetPresetsResponse>`;
  },
  SetPreset: (r) => {
    requireProfile(r.op);
    const name = textAt(r.op, 'PresetName') || undefined;
    const token = textAt(r.op, 'PresetToken') || undefined;
    if (token !== undefined && !r.camera.presets.some((p) => p.token === token)) {
      throw faults.invalidArg('ter:NoToken', `No such preset: ${token}`);
    }
    if (name !== undefined && r.camera.presets.some((p) => p.name === name && p.token !== token)) {
      throw faults.invalidArg('ter:PresetExist', `Preset name in use: ${name}`);
    }
    if (token === undefined && r.camera.presets.length >= 256) {
      throw new SoapFault('env:Receiver', ['ter:Action', 'ter:TooManyPresets'], 'Maximum number of presets reached');
    }
    return `<tptz:SetPresetResponse>${el('tptz:PresetToken', r.camera.setPreset(name, token))}</tptz:SetPresetResponse>`;
  },
  RemovePreset: (r) => {
    requireProfile(r.op);
    const token = textAt(r.op, 'PresetToken') ?? '';
    if (!r.camera.removePreset(token)) throw faults.invalidArg('ter:NoToken', `No such preset: ${token}`);
    return '<tptz:RemovePresetResponse/>';
  },
  GotoPreset: (r) => {
    requireProfile(r.op);
    const token = textAt(r.op, 'PresetToken') ?? '';
    const preset = r.camera.presets.find((p) => p.token === token);
    if (!preset) throw faults.invalidArg('ter:NoToken', `No such preset: ${token}`);
    gotoBearing(r, preset);
    return '<tptz:GotoPresetResponse/>';
  },
  GotoHomePosition: (r) => {
    requireProfile(r.op);
    gotoBearing(r, r.camera.home);
    return '<tptz:GotoHomePositionResponse/>';
  },
  SetHomePosition: (r) => {
    requireProfile(r.op);
    r.camera.setHome();
    return '<tptz:SetHomePositionResponse/>';
  },
  AbsoluteMove: (r) => {
    requireProfile(r.op);
    const to = vector(child(r.op, 'Position'));
    checkRange(to, 0, 'ter:InvalidPosition');
    const speed = vector(child(r.op, 'Speed'));
    r.camera.ptz.absoluteMove(to, {
      ...(speed.x !== undefined ? { x: Math.abs(speed.x) } : {}),
      ...(speed.y !== undefined ? { y: Math.abs(speed.y) } : {}),
      ...(speed.zoom !== undefined ? { zoom: Math.abs(speed.zoom) } : {}),
    });
    return '<tptz:AbsoluteMoveResponse/>';
  },
  RelativeMove: (r) => {
    requireProfile(r.op);
    const by = vector(child(r.op, 'Translation'));
    checkRange(by, -1, 'ter:InvalidTranslation');
    const speed = vector(child(r.op, 'Speed'));
    r.camera.ptz.relativeMove(by, {
      ...(speed.x !== undefined ? { x: Math.abs(speed.x) } : {}),
      ...(speed.y !== undefined ? { y: Math.abs(speed.y) } : {}),
      ...(speed.zoom !== undefined ? { zoom: Math.abs(speed.zoom) } : {}),
    });
    return '<tptz:RelativeMoveResponse/>';
  },
  ContinuousMove: (r) => {
    requireProfile(r.op);
    const velocity = vector(child(r.op, 'Velocity'));
    checkRange(velocity, -1, 'ter:InvalidVelocity');
    const timeoutText = textAt(r.op, 'Timeout');
    const timeoutMs = parseDuration(timeoutText ?? DEFAULT_PTZ_TIMEOUT);
    if (timeoutMs === undefined || timeoutMs < 0) throw faults.invalidArg('ter:TimeoutNotSupported', `Bad Timeout ${timeoutText ?? ''}`);
    r.camera.ptz.continuousMove(velocity, timeoutMs);
    return '<tptz:ContinuousMoveResponse/>';
  },
  Stop: (r) => {
    requireProfile(r.op);
    const panTilt = textAt(r.op, 'PanTilt');
    const zoom = textAt(r.op, 'Zoom');
    r.camera.ptz.stop(panTilt === undefined || panTilt === 'true', zoom === undefined || zoom === 'true');
    return '<tptz:StopResponse/>';
  },
  GetStatus: (r) => {
    requireProfile(r.op);
    const s = r.camera.ptz.status();
    return (
      `<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>` +
      `<tt:PanTilt x="${num(s.x)}" y="${num(s.y)}" space="${SPACE.absPanTilt}"/><tt:Zoom x="${num(s.zoom)}" space="${SPACE.absZoom}"/>` +
      `</tt:Position><tt:MoveStatus><tt:PanTilt>${s.panTiltMoving ? 'MOVING' : 'IDLE'}</tt:PanTilt>` +
      `<tt:Zoom>${s.zoomMoving ? 'MOVING' : 'IDLE'}</tt:Zoom></tt:MoveStatus>` +
      `${el('tt:UtcTime', utcSeconds(r.camera.clock()))}</tptz:PTZStatus></tptz:GetStatusResponse>`
    );
  },
};

function ptzNode(tag = 'tptz:PTZNode'): string {
  return (
    `<${tag} token="${PTZ_NODE_TOKEN}" FixedHomePosition="false" GeoMove="false">${el('tt:Name', PTZ_NODE_TOKEN)}` +
    `<tt:SupportedPTZSpaces>${ptzSpaces()}</tt:SupportedPTZSpaces><tt:MaximumNumberOfPresets>256</tt:MaximumNumberOfPresets>` +
    `<tt:HomeSupported>true</tt:HomeSupported></${tag}>`
  );
}

// ---- events ------------------------------------------------------------------------------------

const EVENTS_ACTION = 'http://www.onvif.org/ver10/events/wsdl';
const SUBSCRIPTION_MANAGER_ACTION = 'http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager';

function simpleItemDescriptions(items: Array<readonly [string, string]>): string {
  return items.map(([name, type]) => `<tt:SimpleItemDescription Name="${esc(name)}" Type="${esc(type)}"/>`).join('');
}

function messageDescription(r: ServiceRequest, t: AlarmTopic, withAlarmItems: boolean): string {
  const v = r.camera.vendor;
  const source: Array<readonly [string, string]> =
    t.source === 'rule'
      ? [
          ['VideoSourceConfigurationToken', 'tt:ReferenceToken'],
          ['VideoAnalyticsConfigurationToken', 'tt:ReferenceToken'],
          ['Rule', 'xs:string'],
        ]
      : [['Source', 'tt:ReferenceToken']];
  const data: Array<readonly [string, string]> = [[t.stateItem, 'xs:boolean']];
  if (withAlarmItems) {
    data.push([v.bearing.item, v.bearing.decimals === 0 ? 'xs:int' : 'xs:float']);
    data.push([v.confidence.item, v.confidence.decimals === 0 ? 'xs:int' : 'xs:float']);
    data.push([v.temperature.item, 'xs:float']);
  }
  return (
    `<tt:MessageDescription IsProperty="true"><tt:Source>${simpleItemDescriptions(source)}</tt:Source>` +
    `<tt:Data>${simpleItemDescriptions(data)}</tt:Data></tt:MessageDescription>`
  );
}

interface TopicNode {
  children: Map<string, TopicNode>;
  leaf?: string;
}

/** The wstop:TopicSet: topics merged into a tree, `tns1:` on the first level only. */
function topicSet(r: ServiceRequest): string {
  const root: TopicNode = { children: new Map() };
  const add = (t: AlarmTopic, withAlarmItems: boolean) => {
    let node = root;
    for (const part of t.topic.split('/')) {
      let next = node.children.get(part);
      if (!next) node.children.set(part, (next = { children: new Map() }));
      node = next;
    }
    node.leaf = messageDescription(r, t, withAlarmItems);
  };
  for (const kind of ALARM_KINDS) add(r.camera.topicOf(kind), true);
  add(MOTION_TOPIC, false);
  const render = (name: string, node: TopicNode): string =>
    `<${name}${node.leaf ? ' wstop:topic="true"' : ''}>${node.leaf ?? ''}${[...node.children].map(([n, c]) => render(n, c)).join('')}</${name}>`;
  return `<wstop:TopicSet>${[...root.children].map(([n, c]) => render(n, c)).join('')}</wstop:TopicSet>`;
}

function subscriptionTimes(r: ServiceRequest, terminationMs: number): string {
  return `${el('wsnt:CurrentTime', utcSeconds(r.camera.clock()))}${el('wsnt:TerminationTime', utcSeconds(terminationMs))}`;
}

function grantedTermination(r: ServiceRequest, requested: string | undefined): number {
  const now = r.camera.clock();
  const { defaultSubscriptionTtlMs, maxSubscriptionTtlMs } = r.fleet.events;
  if (requested === undefined || requested === '') return now + defaultSubscriptionTtlMs;
  const at = parseTerminationTime(requested, now);
  if (at === undefined) {
    throw new SoapFault('env:Sender', ['wsntw:UnacceptableInitialTerminationTimeFault'], `Bad termination time ${requested}`);
  }
  if (at <= now) throw new SoapFault('env:Sender', ['wsntw:UnacceptableInitialTerminationTimeFault'], 'Termination time in the past');
  return Math.min(at, now + maxSubscriptionTtlMs);
}

const events: Record<string, Handler> = {
  GetServiceCapabilities: (r) => `<tev:GetServiceCapabilitiesResponse>${eventCapabilities(r)}</tev:GetServiceCapabilitiesResponse>`,
  GetEventProperties: (r) => ({
    action: `${EVENTS_ACTION}/EventPortType/GetEventPropertiesResponse`,
    body:
      `<tev:GetEventPropertiesResponse>` +
      el('tev:TopicNamespaceLocation', 'http://www.onvif.org/onvif/ver10/topics/topicns.xml') +
      `<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>${topicSet(r)}` +
      el('wsnt:TopicExpressionDialect', CONCRETE_SET) +
      el('wsnt:TopicExpressionDialect', 'http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete') +
      el('tev:MessageContentFilterDialect', 'http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter') +
      el('tev:MessageContentSchemaLocation', 'http://www.onvif.org/onvif/ver10/schema/onvif.xsd') +
      `</tev:GetEventPropertiesResponse>`,
  }),
  CreatePullPointSubscription: (r) => {
    const filter = child(r.op, 'Filter');
    const expressions = children(filter, 'TopicExpression');
    const termination = grantedTermination(r, textAt(r.op, 'InitialTerminationTime'));
    const sub = r.camera.createSubscription(topicFilter(expressions.map((e) => e.text).join('|')), termination);
    if (!sub) {
      throw new SoapFault('env:Receiver', ['ter:Action', 'ter:TooManySubscriptions'], 'Maximum number of subscriptions reached');
    }
    return {
      action: `${EVENTS_ACTION}/EventPortType/CreatePullPointSubscriptionResponse`,
      body:
        `<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>` +
        `${el('wsa5:Address', urlsOf(r).subscription(sub.id))}</tev:SubscriptionReference>` +
        `${subscriptionTimes(r, sub.terminationMs)}</tev:CreatePullPointSubscriptionResponse>`,
    };
  },
};

function liveSubscription(r: ServiceRequest) {
  const sub = r.subscriptionId === undefined ? undefined : r.camera.subscription(r.subscriptionId);
  if (!sub) throw faults.resourceUnknown();
  return sub;
}

const subscription: Record<string, Handler> = {
  PullMessages: async (r) => {
    const sub = liveSubscription(r);
    const timeoutText = textAt(r.op, 'Timeout');
    const requested = timeoutText === undefined ? undefined : parseDuration(timeoutText);
    if (requested === undefined || requested < 0) throw faults.invalidArg('ter:InvalidArgs', `Bad Timeout ${timeoutText ?? '(missing)'}`);
    const limitText = textAt(r.op, 'MessageLimit');
    const limit = limitText === undefined ? 1 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1) throw faults.invalidArg('ter:InvalidArgs', `Bad MessageLimit ${limitText ?? ''}`);
    r.camera.stats.pulls++;
    const messages = await sub.pull(
      Math.min(limit, r.fleet.events.maxMessageLimit),
      Math.min(requested, r.fleet.events.maxPullTimeoutMs),
      r.signal,
    );
    r.camera.stats.eventsSent += messages.length;
    return {
      action: `${EVENTS_ACTION}/PullPointSubscription/PullMessagesResponse`,
      body:
        `<tev:PullMessagesResponse>${el('tev:CurrentTime', utcSeconds(r.camera.clock()))}` +
        `${el('tev:TerminationTime', utcSeconds(sub.terminationMs))}${messages.map((m) => m.xml).join('')}</tev:PullMessagesResponse>`,
    };
  },
  Renew: (r) => {
    const sub = liveSubscription(r);
    sub.terminationMs = grantedTermination(r, textAt(r.op, 'TerminationTime'));
    return {
      action: `${SUBSCRIPTION_MANAGER_ACTION}/RenewResponse`,
      body: `<wsnt:RenewResponse>${el('wsnt:TerminationTime', utcSeconds(sub.terminationMs))}${el('wsnt:CurrentTime', utcSeconds(r.camera.clock()))}</wsnt:RenewResponse>`,
    };
  },
  Unsubscribe: (r) => {
    const sub = liveSubscription(r);
    r.camera.dropSubscription(sub.id);
    return { action: `${SUBSCRIPTION_MANAGER_ACTION}/UnsubscribeResponse`, body: '<wsnt:UnsubscribeResponse/>' };
  },
  SetSynchronizationPoint: (r) => {
    r.camera.synchronize(liveSubscription(r));
    return {
      action: `${EVENTS_ACTION}/PullPointSubscription/SetSynchronizationPointResponse`,
      body: '<tev:SetSynchronizationPointResponse/>',
    };
  },
};

export const HANDLERS: Record<SoapService, Record<string, Handler>> = {
  device,
  media,
  media2,
  ptz,
  events,
  subscription,
};

/** The handler, or undefined: the service does not implement that operation. */
export function handlerFor(service: SoapService, operation: string, profileT: boolean): Handler | undefined {
  if (service === 'media2' && !profileT) return undefined;
  const table = HANDLERS[service];
  return Object.prototype.hasOwnProperty.call(table, operation) ? table[operation] : undefined;
}
