/**
 * Structured JSON logs, one line per event, with a component field.
 * Debug output is switched on per component with MESHFED_DEBUG=global-cp,store
 * (or `*`). The level floor comes from MESHFED_LOG_LEVEL (default info).
 */

import { formatIsoTime } from './utc-format.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  readonly component: string;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export type LogSink = (line: string) => void;

let sink: LogSink = (line) => process.stderr.write(line + '\n');

/** Redirect every logger's output (tests capture it; the demo prefixes it). */
export function setLogSink(next: LogSink): void {
  sink = next;
}

function parseLevel(value: string | undefined): LogLevel {
  return value === 'debug' || value === 'warn' || value === 'error' ? value : 'info';
}

function debugEnabledFor(component: string): boolean {
  const list = process.env.MESHFED_DEBUG;
  if (!list) return false;
  return list.split(',').some((entry) => {
    const name = entry.trim();
    return name === '*' || name === component || component.startsWith(name + '.');
  });
}

function serializeError(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { message: value.message, name: value.name, ...(code === undefined ? {} : { code }) };
  }
  return value;
}

export function createLogger(component: string): Logger {
  const floor = levelRank[parseLevel(process.env.MESHFED_LOG_LEVEL)];
  const debug = debugEnabledFor(component);
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (level === 'debug' ? !debug : levelRank[level] < floor) return;
    const record: Record<string, unknown> = { time: formatIsoTime(), level, component, msg };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) record[k] = serializeError(v);
    }
    sink(JSON.stringify(record));
  };
  return {
    component,
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (sub) => createLogger(`${component}.${sub}`),
  };
}
