/**
 * Vendor flavours of the simulated thermal PTZ camera. Real fire cameras do not agree on ONVIF
 * topics or item names — Hikvision puts most fire detection on its own ISAPI and exposes a
 * rule-engine topic over ONVIF, ONVIF radiometry cameras raise `tns1:VideoSource/RadiometryAlarm`,
 * Dahua names rules after its native event codes — so an agent needs a per-vendor mapping, and the
 * simulator offers several so that mapping is exercised. The tables below are the contract: they
 * are printed in docs/devices/camera-onvif.md and the tests read them rather than repeat them.
 */

export const CAMERA_VENDORS = ['generic', 'hikvision-like', 'dahua-like'] as const;
export type CameraVendor = (typeof CAMERA_VENDORS)[number];

export const ALARM_KINDS = ['fire', 'smoke', 'temperature'] as const;
export type AlarmKind = (typeof ALARM_KINDS)[number];

export interface AlarmTopic {
  /** concrete topic, `tns1:` prefix */
  topic: string;
  /**
   * What the Source of the message names: 'rule' → VideoSourceConfigurationToken,
   * VideoAnalyticsConfigurationToken, Rule (the RuleEngine convention); 'videoSource' → Source
   * = the video source token (the tns1:VideoSource/* convention).
   */
  source: 'rule' | 'videoSource';
  /** rule name carried in Source `Rule` when source is 'rule' */
  rule: string;
  /** Data item holding the boolean state */
  stateItem: string;
}

export interface VendorProfile {
  vendor: CameraVendor;
  manufacturer: string;
  model: string;
  firmwareVersion: string;
  hardwareId: string;
  topics: Record<AlarmKind, AlarmTopic>;
  /** Data item with the camera's pan bearing to the alarm: value = degrees true × scale */
  bearing: { item: string; scale: number; decimals: number };
  /** Data item with the hot-spot temperature (only when one is known) */
  temperature: { item: string; unit: 'C' | 'K'; decimals: number };
  /** Data item with the detector's confidence: value = confidence (0–1) × scale */
  confidence: { item: string; scale: number; decimals: number };
}

/** Motion on the visible channel: what the event-flood fault floods with (wind, leaves, insects). */
export const MOTION_TOPIC: AlarmTopic = {
  topic: 'tns1:VideoSource/MotionAlarm',
  source: 'videoSource',
  rule: '',
  stateItem: 'State',
};

export const VENDOR_PROFILES: Record<CameraVendor, VendorProfile> = {
  generic: {
    vendor: 'generic',
    manufacturer: 'GreenShield',
    model: 'GS-SIM-TPZ640',
    firmwareVersion: 'V1.4.2 build 250301',
    hardwareId: 'GS-TPZ-A1',
    topics: {
      fire: { topic: 'tns1:VideoSource/RadiometryAlarm', source: 'videoSource', rule: '', stateItem: 'State' },
      smoke: { topic: 'tns1:RuleEngine/SmokeDetector/Smoke', source: 'rule', rule: 'SmokeDetector', stateItem: 'IsSmoke' },
      temperature: {
        topic: 'tns1:RuleEngine/Radiometry/TemperatureAlarm',
        source: 'rule',
        rule: 'TemperatureRule',
        stateItem: 'State',
      },
    },
    bearing: { item: 'Bearing', scale: 1, decimals: 1 },
    // ONVIF radiometry expresses temperatures in kelvin.
    temperature: { item: 'Temperature', unit: 'K', decimals: 2 },
    confidence: { item: 'Confidence', scale: 1, decimals: 2 },
  },
  'hikvision-like': {
    vendor: 'hikvision-like',
    manufacturer: 'HIKVISION (simulated)',
    model: 'DS-2TD6267-SIM',
    firmwareVersion: 'V5.5.61 build 240118',
    hardwareId: '88',
    topics: {
      fire: { topic: 'tns1:RuleEngine/FireDetector/FireAlarm', source: 'rule', rule: 'FireDetection-1', stateItem: 'IsFireAlarm' },
      smoke: { topic: 'tns1:RuleEngine/SmokeDetector/SmokeAlarm', source: 'rule', rule: 'SmokeDetection-1', stateItem: 'IsSmokeAlarm' },
      temperature: { topic: 'tns1:VideoSource/RadiometryAlarm', source: 'videoSource', rule: '', stateItem: 'State' },
    },
    // As ISAPI's PTZ azimuth: tenths of a degree, an integer 0–3599.
    bearing: { item: 'Azimuth', scale: 10, decimals: 0 },
    temperature: { item: 'CurrentTemperature', unit: 'C', decimals: 1 },
    confidence: { item: 'Confidence', scale: 100, decimals: 0 },
  },
  'dahua-like': {
    vendor: 'dahua-like',
    manufacturer: 'Dahua (simulated)',
    model: 'TPC-PT8621-SIM',
    firmwareVersion: '2.840.0000000.7.R',
    hardwareId: '1.00',
    topics: {
      fire: { topic: 'tns1:RuleEngine/FireWarning/FireAlarm', source: 'rule', rule: 'FireWarning', stateItem: 'State' },
      smoke: { topic: 'tns1:RuleEngine/SmokeDetection/SmokeAlarm', source: 'rule', rule: 'SmokeDetection', stateItem: 'State' },
      temperature: {
        topic: 'tns1:RuleEngine/HeatImagingTemper/TemperatureAlarm',
        source: 'rule',
        rule: 'HeatImagingTemper',
        stateItem: 'State',
      },
    },
    bearing: { item: 'PanAngle', scale: 1, decimals: 2 },
    temperature: { item: 'Temperature', unit: 'C', decimals: 1 },
    confidence: { item: 'Confidence', scale: 100, decimals: 0 },
  },
};

export function isCameraVendor(v: string): v is CameraVendor {
  return (CAMERA_VENDORS as readonly string[]).includes(v);
}
