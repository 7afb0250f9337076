import { createSecureContext } from 'node:tls';
import { ConfigError, readSettingFile } from './config';

/** The PEM files one TLS setting names (listen.tls, listen.grpcTls, upstream.tls). */
export interface PemFileNames {
  readonly certFile: string | null;
  readonly keyFile: string | null;
  readonly caFile: string | null;
}

export interface PemFiles {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
}

/**
 * Reads a TLS setting's PEM files and checks that they make a TLS context (PEM that parses, a
 * key that matches its certificate); a ConfigError names the setting and what is wrong.
 */
export function loadPemFiles(setting: string, names: PemFileNames): PemFiles {
  const read = (name: keyof PemFileNames): Buffer | undefined => {
    const file = names[name];
    return file === null ? undefined : readSettingFile(setting, name, file);
  };
  const files = { cert: read('certFile'), key: read('keyFile'), ca: read('caFile') };
  try {
    createSecureContext(files);
  } catch (err) {
    throw new ConfigError(`${setting}: the certificate files do not load: ${(err as Error).message}`, { cause: err });
  }
  return Object.fromEntries(Object.entries(files).filter(([, v]) => v !== undefined)) as PemFiles;
}
