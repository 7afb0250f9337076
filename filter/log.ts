import pino from 'pino';

/** Structured JSON logs on stderr (stdout stays free for the dev stack's connection string). */
export type Logger = pino.Logger;

export function createLogger(level: string, name = 'mongoplex'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}
