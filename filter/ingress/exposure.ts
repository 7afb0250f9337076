import { lookup } from 'node:dns/promises';
import { connect, isIP } from 'node:net';
import { lstatSync, unlinkSync } from 'node:fs';
import type { Config } from '../config';
import { ConfigError } from '../config';

/**
 * Who can reach mongoplex's non-client listeners. The gRPC ingress carries every client's
 * bytes with no authentication of its own, and the admin endpoint can pause, drain and reload:
 * neither may be reachable beyond this machine without protection, so start refuses it.
 */

/** `unix:/path` (a Unix domain socket) or `host:port`, as listen.grpc is written. */
export type GrpcAddress = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export function parseGrpcAddress(address: string): GrpcAddress {
  if (address.startsWith('unix:')) return { kind: 'unix', path: address.slice('unix:'.length) };
  const i = address.lastIndexOf(':');
  return { kind: 'tcp', host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

export function isLoopbackAddress(address: string): boolean {
  if (address === '::1') return true;
  if (address.startsWith('::ffff:')) return isLoopbackAddress(address.slice(7));
  return isIP(address) === 4 && address.startsWith('127.');
}

/** True when every address `host` names is a loopback address (an unresolvable name is not). */
export async function onlyLoopback(host: string): Promise<boolean> {
  if (isIP(host)) return isLoopbackAddress(host);
  try {
    const all = await lookup(host, { all: true });
    return all.length > 0 && all.every((a) => isLoopbackAddress(a.address));
  } catch {
    return false;
  }
}

/**
 * Refuses a configuration that would expose the gRPC ingress or the admin endpoint beyond
 * loopback without protection, naming the setting to change.
 */
export async function refuseUnprotectedListeners(config: Config): Promise<void> {
  const problems: string[] = [];
  if (config.listen.grpc !== null) {
    const grpc = parseGrpcAddress(config.listen.grpc);
    if (grpc.kind === 'tcp' && config.listen.grpcTls.certFile === null && !(await onlyLoopback(grpc.host))) {
      problems.push(`  listen.grpc: ${grpc.host} is not a loopback address, and the gRPC ingress trusts whoever connects (it carries every client's bytes). Use a Unix socket (listen.grpc: unix:/path), mutual TLS (listen.grpcTls), or a loopback address`);
    }
  }
  if (config.admin.port !== null && config.admin.token === null && !(await onlyLoopback(config.admin.host))) {
    problems.push(`  admin.host: ${config.admin.host} is not a loopback address: set admin.token (the control endpoints can pause, drain and reload mongoplex), or bind admin.host to 127.0.0.1`);
  }
  if (problems.length) throw new ConfigError(`refusing to start:\n${problems.join('\n')}`);
}

/**
 * Makes a Unix socket path bindable: a socket file no process answers on (left by a process
 * that died) is removed; a live one, or any other kind of file, is an error.
 */
export async function claimSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new ConfigError(`listen.grpc: ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new ConfigError(`listen.grpc: another process already listens on ${path}`);
  unlinkSync(path);
}
