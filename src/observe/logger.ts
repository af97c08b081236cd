/**
 * @module observe/logger
 * JSON-lines logging with pino. `cli/` creates the root logger once; everything else receives a
 * `Logger` in its deps and derives children (`log.child({ digest })`). Libraries default to the
 * silent logger so they say nothing unless wired.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** pino level: trace | debug | info | warn | error | fatal | silent. Default: info (or FERRY_LOG_LEVEL). */
  level?: string;
  /** Component name recorded in every line. */
  name?: string;
  /** Where lines go; default stderr (stdout stays free for command output). */
  destination?: DestinationStream;
}

/** The root logger of a process. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.FERRY_LOG_LEVEL ?? 'info';
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true });
  return pino({ level, ...(opts.name ? { name: opts.name } : {}), base: { pid: process.pid } }, dest);
}

/** A logger that drops everything: the default for libraries and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
