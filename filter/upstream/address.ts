/** A real MongoDB server's address (never a proxy address). */
export class ServerAddress {
  /** `host:port`, made once (it is logged, labelled and compared on hot paths). */
  private readonly text: string;
  private constructor(readonly host: string, readonly port: number) {
    this.text = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  static parse(hostPort: string): ServerAddress {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(hostPort) ?? /^([^:]+):(\d+)$/.exec(hostPort);
    if (!m) throw new Error(`invalid server address '${hostPort}' (expected host:port)`);
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new Error(`invalid port in server address '${hostPort}'`);
    return new ServerAddress(m[1]!.toLowerCase(), port);
  }

  toString(): string {
    return this.text;
  }

  equals(other: ServerAddress): boolean {
    return this.host === other.host && this.port === other.port;
  }
}
