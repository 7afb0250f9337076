import { BSON } from 'bson';

/** What a server told the proxy about itself in its handshake reply. */
export interface ServerDescription {
  readonly minWireVersion: number;
  readonly maxWireVersion: number;
  readonly maxBsonObjectSize: number;
  readonly maxMessageSizeBytes: number;
  readonly maxWriteBatchSize: number;
  /** Undefined when the server does not support sessions. */
  readonly logicalSessionTimeoutMinutes: number | undefined;
  readonly writable: boolean;
  readonly compression: readonly string[];
  readonly setName: string | undefined;
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : fallback;
}

export function describeServer(reply: Buffer): ServerDescription {
  const d = BSON.deserialize(reply, { promoteLongs: true, promoteValues: true });
  return {
    minWireVersion: num(d.minWireVersion, 0),
    maxWireVersion: num(d.maxWireVersion, 0),
    maxBsonObjectSize: num(d.maxBsonObjectSize, 16 * 1024 * 1024),
    maxMessageSizeBytes: num(d.maxMessageSizeBytes, 48_000_000),
    maxWriteBatchSize: num(d.maxWriteBatchSize, 100_000),
    logicalSessionTimeoutMinutes: d.logicalSessionTimeoutMinutes == null ? undefined : num(d.logicalSessionTimeoutMinutes, 30),
    writable: d.isWritablePrimary === true || d.ismaster === true,
    compression: Array.isArray(d.compression) ? d.compression.filter((c: unknown): c is string => typeof c === 'string') : [],
    setName: typeof d.setName === 'string' ? d.setName : undefined,
  };
}
