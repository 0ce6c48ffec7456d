export { startCameraFleet, cameraSpecsFromLedger } from './fleet.js';
export type { CameraFleet, CameraFleetOptions, FleetStats } from './fleet.js';
export type {
  ActiveAlarm,
  CameraSpec,
  CameraStats,
  OfflineMode,
  RaisedAlarm,
  RaiseFireInput,
  SimCamera,
} from './camera.js';
export { ALARM_KINDS, CAMERA_VENDORS, MOTION_TOPIC, VENDOR_PROFILES, isCameraVendor } from './vendors.js';
export type { AlarmKind, AlarmTopic, CameraVendor, VendorProfile } from './vendors.js';
export { DEFAULT_PRESETS, DEFAULT_PTZ_LIMITS, bearingToPanX, panXToBearing } from './ptz.js';
export type { PtzLimits, PtzPreset, PtzStatus } from './ptz.js';
export { WS_DISCOVERY_MULTICAST, WS_DISCOVERY_PORT } from './discovery.js';
export type { DiscoveryOptions } from './discovery.js';
export type { SnapshotOptions } from './snapshot.js';
export { cameraUrls } from './urls.js';
