import { after, before } from 'node:test';
import * as net from 'node:net';

/**
 * A TCP relay between the proxy and a real server that injects faults on the server's
 * side: severing a connection in the middle of a reply (the upstream that "vanishes
 * mid-reply"), or holding replies back (a slow server). Test fixture only.
 */
export class FaultRelay {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private armed: number | undefined;
  private held: Array<() => void> | undefined;
  port = 0;
  severed = 0;

  constructor(private readonly targetHost: string, private readonly targetPort: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect({ host: this.targetHost, port: this.targetPort });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.on('data', (c: Buffer) => upstream.write(c));
      upstream.on('data', (c: Buffer) => {
        if (this.held) {
          this.held.push(() => client.write(c));
          return;
        }
        if (this.armed !== undefined) {
          const keep = Math.min(this.armed, c.length - 1);
          this.armed = undefined;
          this.severed++;
          client.write(c.subarray(0, keep), end);
          return;
        }
        client.write(c);
      });
    });
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** The next reply bytes from the server are cut after `keepBytes`, and both sides closed. */
  severNextReply(keepBytes = 20): void {
    this.armed = keepBytes;
  }

  /** Server replies are held back until `release()`. */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const send of held) send();
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise((r) => this.server.close(r));
  }
}

/** Inside a describe: a relay in front of `target()`, listening before the suite and closed (released) after it. */
export function useFaultRelay(target: () => { host: string; port: number }): { readonly relay: FaultRelay } {
  const state: { relay?: FaultRelay } = {};
  before(async () => {
    const t = target();
    state.relay = new FaultRelay(t.host, t.port);
    await state.relay.listen();
  });
  after(async () => {
    state.relay?.release();
    await state.relay?.close();
  });
  return {
    get relay(): FaultRelay {
      return state.relay!;
    },
  };
}
