import { pino, type Logger, type LevelWithSilent } from 'pino';

/** One root logger per process; modules take `log.child({ module })`. */
export function createLogger(level: LevelWithSilent, opts: { pretty?: boolean } = {}): Logger {
  if (opts.pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level });
}
export type { Logger };
