import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** The value types settings share, and the error every configuration problem is reported as. */

export const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port');
export const port = z.number().int().min(0).max(65535);
export const ms = z.number().int().min(0);
/** A host:port, or `unix:` and an absolute path (a Unix domain socket). */
export const grpcAddress = z.string().regex(/^unix:\/.+$|^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port or unix:/absolute/path');
export const file = z.string().min(1).nullable().default(null);
export const authMode = z.enum(['none', 'proxy', 'passthrough']);

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A configuration error about one setting (the same form as the schema's own errors). */
export function invalid(setting: string, why: string): ConfigError {
  return new ConfigError(`invalid configuration:\n  ${setting}: ${why}`);
}

/** A certificate and its key come together. */
export function checkCertificatePair(setting: string, t: { certFile: string | null; keyFile: string | null }): void {
  if ((t.certFile === null) !== (t.keyFile === null)) throw invalid(setting, 'set both certFile and keyFile, or neither');
}

/** A file a setting names (a password, a certificate): unreadable is a ConfigError naming the setting and the reason. */
export function readSettingFile(setting: string, name: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${name} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}
