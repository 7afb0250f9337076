/** A real MongoDB server's address (never a proxy address). */
export class ServerAddress {
  private constructor(readonly host: string, readonly port: number) {}

  static parse(hostPort: string): ServerAddress {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(hostPort) ?? /^([^:]+):(\d+)$/.exec(hostPort);
    if (!m) throw new Error(`invalid server address '${hostPort}' (expected host:port)`);
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new Error(`invalid port in server address '${hostPort}'`);
    return new ServerAddress(m[1]!.toLowerCase(), port);
  }

  toString(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  equals(other: ServerAddress): boolean {
    return this.host === other.host && this.port === other.port;
  }
}
