/**
 * Test-only page for test/e2e/video-ui.test.ts: signs in (cookie), then mounts the dashboard's
 * VideoPlayer, SnapshotStrip and VideoWall the way the app will (same-origin with the gateway).
 * Bundled by the test with esbuild; not part of the dashboard.
 *
 * `window.__vh` drives them and reports what the page saw: every state each player showed (a
 * MutationObserver on `data-state`, so a short `reconnecting` is not missed between two polls),
 * and the live sockets the page opened (the global WebSocket is wrapped to count them and to
 * drop them as a broken network would).
 */
import type { DeviceView } from '../../../protocol/ws.js';
import { fetchDevices, login } from '../../../dashboard/src/api.js';
import { I18n } from '../../../dashboard/src/i18n.js';
import { SnapshotStrip, VideoPlayer } from '../../../dashboard/src/video-player.js';
import { VideoWall } from '../../../dashboard/src/video-wall.js';

export interface VideoHarness {
  ready: boolean;
  role: string;
  /** Every data-state each player element showed, in order, by camera id. */
  states: Record<string, string[]>;
  /** Live video sockets opened by the page so far. */
  socketsOpened: number;
  openSockets(): number;
  /** Closes every open video socket from the page's side (code 3000), as a dropped network would look to the player. */
  dropSockets(): number;
  openPlayer(cameraId: string, opts?: { ptz?: boolean }): void;
  stopPlayer(): void;
  /** The stage player's media clock (seconds) and readyState. */
  playback(): { currentTime: number; readyState: number; hasSrc: boolean };
  /** Media clocks of the wall's tiles, by camera id. */
  wallPlayback(): Record<string, number>;
  wall: { show(): void; hide(): void; setCameras(ids: string[]): void };
  strip(incidentId: string): Promise<void>;
  /** Shows one part of the page: the stage (player + strip) or the wall. */
  only(part: 'stage' | 'wall'): void;
  setLang(lang: 'zh-CN' | 'en'): void;
}

declare global {
  interface Window {
    __vh: VideoHarness;
    startHarness(username: string, password: string): Promise<void>;
  }
}

const videoSockets: WebSocket[] = [];
let opened = 0;
const NativeWebSocket = window.WebSocket;
class TrackedWebSocket extends NativeWebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    if (String(url).includes('/api/video/')) {
      videoSockets.push(this);
      opened++;
    }
  }
}
window.WebSocket = TrackedWebSocket;

window.startHarness = async (username: string, password: string) => {
  const { user } = await login(username, password);
  const i18n = new I18n(new URLSearchParams(location.search).get('lang') === 'en' ? 'en' : 'zh-CN');
  const role = () => user.role;
  const cameras: DeviceView[] = (await fetchDevices({ kind: 'camera' })).devices;
  const stage = document.getElementById('stage')!;
  const playerSlot = document.getElementById('player')!;
  const stripSlot = document.getElementById('strip')!;
  const wallRoot = document.getElementById('wall')!;
  const wall = new VideoWall({ root: wallRoot, i18n, role, cameras: () => cameras });
  let player: VideoPlayer | null = null;
  let strip: SnapshotStrip | null = null;

  const states: Record<string, string[]> = {};
  new MutationObserver((records) => {
    for (const r of records) {
      const el = r.target as HTMLElement;
      if (el.dataset.testid !== 'video-player') continue;
      const list = (states[el.dataset.camera!] ??= []);
      if (list.at(-1) !== el.dataset.state) list.push(el.dataset.state!);
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-state'] });

  window.__vh = {
    ready: true,
    role: user.role,
    states,
    get socketsOpened() {
      return opened;
    },
    openSockets: () => videoSockets.filter((s) => s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING).length,
    dropSockets() {
      const open = videoSockets.filter((s) => s.readyState === WebSocket.OPEN);
      for (const s of open) s.close(3000, 'test: network dropped');
      return open.length;
    },
    openPlayer(cameraId, opts = {}) {
      player?.stop();
      player = new VideoPlayer({ cameraId, i18n, role, ptz: opts.ptz ?? false });
      playerSlot.replaceChildren(player.el);
      player.start();
    },
    stopPlayer() {
      player?.stop();
    },
    playback() {
      const v = playerSlot.querySelector('video');
      return { currentTime: v?.currentTime ?? -1, readyState: v?.readyState ?? -1, hasSrc: v?.hasAttribute('src') ?? false };
    },
    wallPlayback() {
      const out: Record<string, number> = {};
      for (const tile of wallRoot.querySelectorAll<HTMLElement>('[data-testid="vw-tile"]')) out[tile.dataset.camera!] = tile.querySelector('video')!.currentTime;
      return out;
    },
    wall: {
      show: () => wall.show(),
      hide: () => wall.hide(),
      setCameras: (ids) => wall.setCameras(ids),
    },
    async strip(incidentId) {
      strip?.dispose();
      strip = new SnapshotStrip({ incidentId, i18n });
      stripSlot.replaceChildren(strip.el);
      await strip.refresh();
    },
    only(part) {
      stage.hidden = part !== 'stage';
      wallRoot.hidden = part !== 'wall';
    },
    setLang(lang) {
      i18n.setLang(lang);
    },
  };
};
