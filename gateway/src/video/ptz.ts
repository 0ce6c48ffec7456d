/**
 * PTZ from the dashboard: a request becomes the existing `ptz.goto_preset` / `ptz.move` /
 * `ptz.stop` command, published to the camera's agent (which speaks ONVIF to the camera), and is
 * answered when the agent's ack for that command id comes back on the bus: the first ack, or the
 * final one with `wait: "done"`. No ack in time: 504. The command expires with the request, so a
 * move held up on the way (an agent reconnecting) is never carried out late.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { VideoConfig } from '../../../config/schema.js';
import type { AckStatus, DeviceCommand } from '../../../protocol/payloads.js';
import type { PtzRequest, PtzResponse } from '../../../protocol/video.js';
import type { Bus } from '../bus.js';
import { ApiError } from '../errors.js';
import type { Metrics } from '../metrics.js';

export interface PtzContext {
  config: VideoConfig['ptz'];
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  sendCommand(deviceId: string, command: DeviceCommand): Promise<void>;
}

const FINAL: readonly AckStatus[] = ['done', 'failed', 'rejected', 'preempted', 'expired'];

interface Waiter {
  cameraId: string;
  wait: 'accepted' | 'done';
  resolve(ack: { status: AckStatus; reason: string | null; at: number }): void;
}

export class PtzService {
  readonly #ctx: PtzContext;
  readonly #waiters = new Map<string, Waiter>();
  #off: (() => void) | undefined;

  constructor(ctx: PtzContext) {
    this.#ctx = ctx;
  }

  start(): void {
    this.#off = this.#ctx.bus.on('ack', ({ device, message }) => {
      const w = this.#waiters.get(message.cmdId);
      if (!w || w.cameraId !== device.id) return;
      if (w.wait === 'done' && !FINAL.includes(message.status)) return;
      w.resolve({ status: message.status, reason: message.reason ?? null, at: Date.now() });
    });
  }

  stop(): void {
    this.#off?.();
  }

  static command(req: PtzRequest, id: string, now: number, expiresAt: number): DeviceCommand {
    const base = { id, ts: now, expiresAt };
    switch (req.action) {
      case 'goto_preset':
        return { ...base, name: 'ptz.goto_preset', params: { preset: req.preset, ...(req.speed !== undefined ? { speed: req.speed } : {}) } };
      case 'move':
        return {
          ...base,
          name: 'ptz.move',
          params: { pan: req.pan, tilt: req.tilt, ...(req.zoom !== undefined ? { zoom: req.zoom } : {}), ...(req.durationMs !== undefined ? { durationMs: req.durationMs } : {}) },
        };
      case 'stop':
        return { ...base, name: 'ptz.stop', params: {} };
    }
  }

  async send(cameraId: string, req: PtzRequest): Promise<PtzResponse> {
    const { config, metrics, log } = this.#ctx;
    const wait = req.wait ?? 'accepted';
    const timeoutMs = wait === 'done' ? config.doneTimeoutMs : config.ackTimeoutMs;
    const started = Date.now();
    const id = `ptz-${started.toString(36)}-${randomBytes(4).toString('hex')}`;
    // The agent must start it before the first ack is due; later it would surprise whoever asked.
    const command = PtzService.command(req, id, started, started + config.ackTimeoutMs);
    const acked = new Promise<{ status: AckStatus; reason: string | null; at: number } | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.#waiters.set(id, {
        cameraId,
        wait,
        resolve: (ack) => {
          clearTimeout(timer);
          resolve(ack);
        },
      });
    });
    try {
      await this.#ctx.sendCommand(cameraId, command);
      const ack = await acked;
      if (!ack) {
        metrics.ptzCommands.inc({ action: req.action, result: 'timeout' });
        throw new ApiError('PTZ_TIMEOUT', `no answer from camera "${cameraId}"'s agent within ${timeoutMs} ms (is the agent or the camera offline?)`);
      }
      metrics.ptzCommands.inc({ action: req.action, result: ack.status });
      log.debug({ camera: cameraId, command: id, status: ack.status }, 'ptz: acked');
      if (ack.status === 'rejected') throw new ApiError('PTZ_REJECTED', ack.reason ?? ERR_REJECTED);
      if (ack.status === 'failed' || ack.status === 'expired') throw new ApiError('PTZ_FAILED', ack.reason ?? `the command ${ack.status}`);
      return { cameraId, commandId: id, action: req.action, status: ack.status, reason: ack.reason, elapsedMs: ack.at - started };
    } catch (err) {
      if (err instanceof ApiError) throw err;
      // sendCommand refuses a command that breaks the contract (a bad parameter).
      if (/^invalid command/.test((err as Error).message)) throw new ApiError('BAD_REQUEST', (err as Error).message);
      throw err;
    } finally {
      this.#waiters.delete(id);
    }
  }
}

const ERR_REJECTED = 'the agent refused the command';
