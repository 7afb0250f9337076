/**
 * What the proxy knows about one client connection, for inspection (/clients), the access log
 * and the traffic taps. Mutable fields are kept current by the session's command handler.
 */
export class ClientInfo {
  readonly connectedAt = Date.now();
  /** From the handshake's `client.application.name`. */
  appName: string | undefined;
  /** From the handshake's `client.driver` (name and version). */
  driver: string | undefined;
  /** The command being forwarded now (undefined: none), and since when (`Date.now()`). */
  command: string | undefined;
  commandSince = 0;
  /** Commands of this client forwarded upstream. */
  forwarded = 0;
  /** The last forwarded command's database and collection (kept after it finished). */
  lastDb: string | undefined;
  lastCollection: string | undefined;
  lastCommand: string | undefined;

  constructor(readonly id: number, readonly remote: string) {}

  /** Reads the handshake's client metadata (bounded: names are cut at 128 characters). */
  handshake(client: unknown): void {
    if (!client || typeof client !== 'object') return;
    const c = client as { application?: { name?: unknown }; driver?: { name?: unknown; version?: unknown } };
    if (typeof c.application?.name === 'string') this.appName = c.application.name.slice(0, 128);
    if (typeof c.driver?.name === 'string') this.driver = `${c.driver.name} ${typeof c.driver.version === 'string' ? c.driver.version : ''}`.trim().slice(0, 128);
  }

  started(command: string, db: string | undefined, collection: string | undefined): void {
    this.command = command;
    this.lastCommand = command;
    this.lastDb = db;
    this.lastCollection = collection;
    this.commandSince = Date.now();
    this.forwarded++;
  }

  finished(): void {
    this.command = undefined;
  }
}
