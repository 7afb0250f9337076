import * as net from 'node:net';

/** Ports freePort handed out lately, oldest first (bounded): callers bind them some time later. */
const handedOut = new Set<number>();
const HANDED_OUT_LIMIT = 4096;

function kernelFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A loopback port that was free a moment ago, and not one this process was handed lately: the
 * kernel may give a closed port out again at once, so two calls in a row (a slot's gRPC and
 * admin ports) could otherwise get the same one.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await kernelFreePort();
    if (handedOut.has(port) && attempt < 100) continue;
    handedOut.add(port);
    if (handedOut.size > HANDED_OUT_LIMIT) handedOut.delete(handedOut.values().next().value!);
    return port;
  }
}

/** Whether something already listens on (or holds) host:port: tries to bind it. */
export function portInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(true));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(false)));
  });
}

/** Whether something accepts TCP connections on the port now (a connect probe). */
export function acceptsConnections(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

/** `n` free ports in a row (mongoplex worker i serves ext_proc at listen.grpc's port + i). */
export async function consecutiveFreePorts(n: number): Promise<number> {
  for (;;) {
    const first = await freePort();
    let free = first + n - 1 <= 65535;
    for (let i = 1; free && i < n; i++) free = !(await portInUse(first + i));
    if (free) return first;
  }
}
