import { BSON, Long } from 'bson';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import type { ServerSet } from '../topology/server-set';
import type { ServerAddress } from '../upstream/address';
import type { UpstreamPool } from '../upstream/pool';

/** Most cursors / transactions remembered per client connection; the oldest are forgotten. */
const MAX_PER_CLIENT = 10_000;

interface OpenCursor {
  readonly id: bigint;
  readonly ns: string;
  readonly server: ServerAddress;
}

interface OpenTransaction {
  readonly lsid: Buffer;
  readonly txnNumber: bigint;
  readonly server: ServerAddress;
}

function bounded<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= MAX_PER_CLIENT) map.delete(map.keys().next().value as string);
  map.set(key, value);
}

/**
 * What one load-balanced client left open upstream. A load-balanced driver pins cursors and
 * transactions to its connection and expects them to die with it (as a real load balancer in
 * front of mongos arranges); behind a pool they would outlive it, so when the client
 * disconnects the proxy kills its cursors and aborts its transactions itself.
 */
export class ClientResources {
  private readonly cursors = new Map<string, OpenCursor>();
  private readonly transactions = new Map<string, OpenTransaction>();

  get openCursors(): number {
    return this.cursors.size;
  }

  get openTransactions(): number {
    return this.transactions.size;
  }

  cursorOpened(id: bigint, ns: string, server: ServerAddress): void {
    bounded(this.cursors, `${id}|${ns}`, { id, ns, server });
  }

  cursorClosed(id: bigint, ns: string): void {
    this.cursors.delete(`${id}|${ns}`);
  }

  transactionStarted(lsidHex: string, lsid: Buffer, txnNumber: bigint, server: ServerAddress): void {
    bounded(this.transactions, lsidHex, { lsid: Buffer.from(lsid), txnNumber, server });
  }

  transactionEnded(lsidHex: string): void {
    this.transactions.delete(lsidHex);
  }

  /** Kills the cursors and aborts the transactions still open; failures are logged and counted. */
  async release(servers: ServerSet, log: Logger): Promise<void> {
    const work: Array<Promise<void>> = [];
    const byNamespace = new Map<string, OpenCursor[]>();
    for (const c of this.cursors.values()) {
      const key = `${c.server}|${c.ns}`;
      const group = byNamespace.get(key);
      if (group) group.push(c);
      else byNamespace.set(key, [c]);
    }
    for (const group of byNamespace.values()) {
      const { server, ns } = group[0]!;
      const dot = ns.indexOf('.');
      work.push(runCleanup(servers.pool(server), ns.slice(0, dot), { killCursors: ns.slice(dot + 1), cursors: group.map((c) => Long.fromBigInt(c.id)) }, 'killCursors', log));
    }
    for (const t of this.transactions.values()) {
      work.push(runCleanup(servers.pool(t.server), 'admin', { abortTransaction: 1, lsid: BSON.deserialize(t.lsid), txnNumber: Long.fromBigInt(t.txnNumber), autocommit: false }, 'abortTransaction', log));
    }
    this.cursors.clear();
    this.transactions.clear();
    await Promise.all(work);
  }
}

/**
 * A cleanup command the proxy sends on a client's behalf (kill a cursor, abort a transaction),
 * through the pool like any request; failures are logged and counted, never thrown.
 */
export async function runCleanup(pool: UpstreamPool | undefined, db: string, command: Record<string, unknown>, kind: string, log: Logger): Promise<void> {
  if (!pool) return;
  try {
    // Killing a cursor or aborting a transaction frees server resources: it goes first.
    const conn = await pool.checkOut('continuation');
    try {
      await conn.command(db, command);
      Metrics.clientCleanup.add(1, { kind, result: 'ok' });
    } finally {
      pool.checkIn(conn);
    }
  } catch (err) {
    Metrics.clientCleanup.add(1, { kind, result: 'failed' });
    log.warn({ kind, server: pool.address.toString(), err: (err as Error).message }, 'cleanup command failed');
  }
}
