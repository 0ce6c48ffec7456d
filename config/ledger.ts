/**
 * The device ledger (台账): every device the site owns, where it stands and which agent speaks for
 * it. Command centers keep it as a spreadsheet, so it is imported from CSV; every bad row is
 * reported with its line number and nothing is silently dropped.
 */
import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import { DEVICE_KINDS, type DeviceKind } from '../protocol/payloads.js';
import { isValidId } from '../protocol/topics.js';

export interface WaterTankSettings {
  capacityM3: number;
  heightMm: number;
  lowPercent: number;
  criticalPercent: number;
  modbusHost?: string;
  modbusPort?: number;
  modbusUnit: number;
}
export const CAMERA_VENDORS = ['generic', 'hikvision-like', 'dahua-like'] as const;
export type CameraVendor = (typeof CAMERA_VENDORS)[number];

export interface CameraSettings {
  headingDeg?: number;
  viewRangeM: number;
  onvifUrl?: string;
  rtspUrl?: string;
  /** Which ONVIF event topics the camera uses for fire/smoke (the agent maps per vendor). */
  vendor: CameraVendor;
}
export interface VoicePoleSettings {
  apiUrl?: string;
}

interface LedgerDeviceBase {
  id: string;
  name: string;
  /** WGS-84 */
  lat: number;
  lon: number;
  grid: string;
  community: string;
  agent: string;
}
export type LedgerDevice =
  | (LedgerDeviceBase & { kind: 'water_tank'; settings: WaterTankSettings })
  | (LedgerDeviceBase & { kind: 'camera'; settings: CameraSettings })
  | (LedgerDeviceBase & { kind: 'voice_pole'; settings: VoicePoleSettings });

export class LedgerError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    const shown = problems.slice(0, 50);
    const more = problems.length > shown.length ? `\n  … and ${problems.length - shown.length} more` : '';
    super(`invalid device ledger ${source}:\n  ${shown.join('\n  ')}${more}`);
    this.name = 'LedgerError';
    this.problems = problems;
  }
}

/** Columns, in the order the generator writes them. Chinese headers are accepted as aliases. */
export const LEDGER_COLUMNS = [
  'id',
  'kind',
  'name',
  'lat',
  'lon',
  'grid',
  'community',
  'agent',
  'capacity_m3',
  'height_mm',
  'low_percent',
  'critical_percent',
  'modbus_host',
  'modbus_port',
  'modbus_unit',
  'heading_deg',
  'view_range_m',
  'onvif_url',
  'rtsp_url',
  'vendor',
  'api_url',
] as const;
type Column = (typeof LEDGER_COLUMNS)[number];
const REQUIRED: Column[] = ['id', 'kind', 'name', 'lat', 'lon', 'grid', 'community', 'agent'];

const HEADER_ALIASES: Record<string, Column> = {
  设备编号: 'id',
  编号: 'id',
  类型: 'kind',
  设备类型: 'kind',
  名称: 'name',
  设备名称: 'name',
  纬度: 'lat',
  经度: 'lon',
  网格: 'grid',
  社区: 'community',
  代理: 'agent',
  边缘代理: 'agent',
  容量: 'capacity_m3',
};
const KIND_ALIASES: Record<string, DeviceKind> = {
  摄像头: 'camera',
  摄像机: 'camera',
  监控: 'camera',
  广播: 'voice_pole',
  语音广播: 'voice_pole',
  广播杆: 'voice_pole',
  水池: 'water_tank',
  水箱: 'water_tank',
  消防水池: 'water_tank',
};

type Row = Partial<Record<Column, string>>;

class RowReader {
  readonly problems: string[] = [];
  constructor(
    private readonly row: Row,
    private readonly line: number,
  ) {}
  private fail(column: Column, reason: string): undefined {
    this.problems.push(`line ${this.line}: ${column}: ${reason}`);
    return undefined;
  }
  text(column: Column): string | undefined {
    const v = this.row[column]?.trim();
    return v === '' ? undefined : v;
  }
  required(column: Column): string {
    return this.text(column) ?? this.fail(column, 'is required') ?? '';
  }
  number(column: Column, min: number, max: number): number | undefined {
    const raw = this.text(column);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n)) return this.fail(column, `"${raw}" is not a number`);
    if (n < min || n > max) return this.fail(column, `${n} is outside ${min}..${max}`);
    return n;
  }
  integer(column: Column, min: number, max: number): number | undefined {
    const n = this.number(column, min, max);
    if (n !== undefined && !Number.isInteger(n)) return this.fail(column, `${n} is not a whole number`);
    return n;
  }
  requiredNumber(column: Column, min: number, max: number): number {
    if (this.text(column) === undefined) return this.fail(column, 'is required') ?? NaN;
    return this.number(column, min, max) ?? NaN;
  }
  url(column: Column): string | undefined {
    const raw = this.text(column);
    if (raw === undefined) return undefined;
    try {
      new URL(raw);
      return raw;
    } catch {
      return this.fail(column, `"${raw}" is not a URL`);
    }
  }
  id(column: Column): string {
    const v = this.required(column);
    if (v !== '' && !isValidId(v)) this.fail(column, `"${v}" may hold only letters, digits, '_', '.', '-' (max 64)`);
    return v;
  }
  kind(): DeviceKind | undefined {
    const raw = this.required('kind');
    const kind = KIND_ALIASES[raw] ?? raw;
    if ((DEVICE_KINDS as readonly string[]).includes(kind)) return kind as DeviceKind;
    if (raw !== '') this.fail('kind', `"${raw}" is not one of ${DEVICE_KINDS.join(', ')}`);
    return undefined;
  }
  unused(columns: Column[], kind: DeviceKind): void {
    for (const c of columns) if (this.text(c) !== undefined) this.fail(c, `does not apply to a ${kind}`);
  }
}

const TANK_COLUMNS: Column[] = ['capacity_m3', 'height_mm', 'low_percent', 'critical_percent', 'modbus_host', 'modbus_port', 'modbus_unit'];
const CAMERA_COLUMNS: Column[] = ['heading_deg', 'view_range_m', 'onvif_url', 'rtsp_url', 'vendor'];
const POLE_COLUMNS: Column[] = ['api_url'];

function readRow(row: Row, line: number): { device?: LedgerDevice; problems: string[] } {
  const r = new RowReader(row, line);
  const base: LedgerDeviceBase = {
    id: r.id('id'),
    name: r.required('name'),
    lat: r.requiredNumber('lat', -90, 90),
    lon: r.requiredNumber('lon', -180, 180),
    grid: r.id('grid'),
    community: r.required('community'),
    agent: r.id('agent'),
  };
  const kind = r.kind();
  let device: LedgerDevice | undefined;
  if (kind === 'water_tank') {
    r.unused([...CAMERA_COLUMNS, ...POLE_COLUMNS], kind);
    const lowPercent = r.number('low_percent', 0, 100) ?? 30;
    const criticalPercent = r.number('critical_percent', 0, 100) ?? 15;
    if (criticalPercent > lowPercent) r.problems.push(`line ${line}: critical_percent: ${criticalPercent} is above low_percent ${lowPercent}`);
    const modbusHost = r.text('modbus_host');
    const modbusPort = r.integer('modbus_port', 1, 65535);
    device = {
      ...base,
      kind,
      settings: {
        capacityM3: r.requiredNumber('capacity_m3', 0.1, 10_000),
        heightMm: r.requiredNumber('height_mm', 100, 20_000),
        lowPercent,
        criticalPercent,
        ...(modbusHost !== undefined ? { modbusHost } : {}),
        ...(modbusPort !== undefined ? { modbusPort } : {}),
        modbusUnit: r.integer('modbus_unit', 0, 255) ?? 1,
      },
    };
  } else if (kind === 'camera') {
    r.unused([...TANK_COLUMNS, ...POLE_COLUMNS], kind);
    const headingDeg = r.number('heading_deg', 0, 360);
    const onvifUrl = r.url('onvif_url');
    const rtspUrl = r.url('rtsp_url');
    const vendorText = r.text('vendor') ?? 'generic';
    const vendor = (CAMERA_VENDORS as readonly string[]).includes(vendorText) ? (vendorText as CameraVendor) : undefined;
    if (!vendor) r.problems.push(`line ${line}: vendor: "${vendorText}" is not one of ${CAMERA_VENDORS.join(', ')}`);
    device = {
      ...base,
      kind,
      settings: {
        ...(headingDeg !== undefined ? { headingDeg } : {}),
        viewRangeM: r.number('view_range_m', 10, 50_000) ?? 5000,
        ...(onvifUrl !== undefined ? { onvifUrl } : {}),
        ...(rtspUrl !== undefined ? { rtspUrl } : {}),
        vendor: vendor ?? 'generic',
      },
    };
  } else if (kind === 'voice_pole') {
    r.unused([...TANK_COLUMNS, ...CAMERA_COLUMNS], kind);
    const apiUrl = r.url('api_url');
    device = { ...base, kind, settings: { ...(apiUrl !== undefined ? { apiUrl } : {}) } };
  }
  return r.problems.length === 0 && device ? { device, problems: [] } : { problems: r.problems };
}

export interface ParsedLedger {
  devices: LedgerDevice[];
  problems: string[];
}

/** Parses ledger CSV text. Returns every valid device and one problem line per fault. */
export function parseLedgerCsv(text: string): ParsedLedger {
  let records: Array<{ record: string[]; info: { lines: number } }>;
  try {
    records = parseCsv(text, { bom: true, relax_column_count: false, skip_empty_lines: true, info: true, trim: false }) as typeof records;
  } catch (err) {
    return { devices: [], problems: [`CSV: ${(err as Error).message}`] };
  }
  const header = records[0]?.record;
  if (!header) return { devices: [], problems: ['line 1: the file is empty (expected a header row)'] };
  const problems: string[] = [];
  const columns: Array<Column | undefined> = header.map((h) => {
    const name = h.trim();
    const col = (LEDGER_COLUMNS as readonly string[]).includes(name) ? (name as Column) : HEADER_ALIASES[name];
    if (!col) problems.push(`line 1: unknown column "${name}" (known: ${LEDGER_COLUMNS.join(', ')})`);
    return col;
  });
  for (const req of REQUIRED) if (!columns.includes(req)) problems.push(`line 1: missing column "${req}"`);
  if (problems.length > 0) return { devices: [], problems };

  const devices: LedgerDevice[] = [];
  const seen = new Map<string, number>();
  for (const { record, info } of records.slice(1)) {
    const row: Row = {};
    record.forEach((value, i) => {
      const col = columns[i];
      if (col) row[col] = value;
    });
    const { device, problems: rowProblems } = readRow(row, info.lines);
    problems.push(...rowProblems);
    if (!device) continue;
    const first = seen.get(device.id);
    if (first !== undefined) {
      problems.push(`line ${info.lines}: id: "${device.id}" already used on line ${first}`);
      continue;
    }
    seen.set(device.id, info.lines);
    devices.push(device);
  }
  return { devices, problems };
}

/** Loads the ledger file; any invalid row fails the whole load, listing every problem. */
export function loadLedger(file: string): LedgerDevice[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new LedgerError(file, [`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  const { devices, problems } = parseLedgerCsv(text);
  if (problems.length > 0) throw new LedgerError(file, problems);
  return devices;
}

/** Writes devices back to CSV (the generator's output, and an export for the command center). */
export function ledgerToCsv(devices: readonly LedgerDevice[]): string {
  const cell = (v: string | number | undefined) => {
    if (v === undefined) return '';
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [LEDGER_COLUMNS.join(',')];
  for (const d of devices) {
    const s = d.settings as Partial<WaterTankSettings & CameraSettings & VoicePoleSettings>;
    const values: Record<Column, string | number | undefined> = {
      id: d.id,
      kind: d.kind,
      name: d.name,
      lat: d.lat,
      lon: d.lon,
      grid: d.grid,
      community: d.community,
      agent: d.agent,
      capacity_m3: s.capacityM3,
      height_mm: s.heightMm,
      low_percent: s.lowPercent,
      critical_percent: s.criticalPercent,
      modbus_host: s.modbusHost,
      modbus_port: s.modbusPort,
      modbus_unit: d.kind === 'water_tank' ? s.modbusUnit : undefined,
      heading_deg: s.headingDeg,
      view_range_m: s.viewRangeM,
      onvif_url: s.onvifUrl,
      rtsp_url: s.rtspUrl,
      vendor: s.vendor,
      api_url: s.apiUrl,
    };
    lines.push(LEDGER_COLUMNS.map((c) => cell(values[c])).join(','));
  }
  return `${lines.join('\n')}\n`;
}
