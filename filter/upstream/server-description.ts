import { BSON, type Document } from 'bson';
import { MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE_BYTES, MAX_WRITE_BATCH_SIZE } from '../wire/limits';

/** What kind of server answered a hello, as the SDAM specification names them. */
export type ServerType = 'RSPrimary' | 'RSSecondary' | 'RSArbiter' | 'RSOther' | 'RSGhost' | 'Standalone' | 'Mongos' | 'Unknown';

/** The SDAM specification's reading of a hello reply. */
export function serverTypeOf(hello: Document): ServerType {
  if (hello.ok !== 1) return 'Unknown';
  if (hello.isreplicaset === true) return 'RSGhost';
  if (hello.msg === 'isdbgrid') return 'Mongos';
  if (typeof hello.setName !== 'string') return 'Standalone';
  if (hello.isWritablePrimary === true || hello.ismaster === true) return 'RSPrimary';
  if (hello.secondary === true) return 'RSSecondary';
  if (hello.arbiterOnly === true) return 'RSArbiter';
  return 'RSOther';
}

/** What a server told the proxy about itself in its handshake reply. */
export interface ServerDescription {
  readonly type: ServerType;
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
  return describeHello(BSON.deserialize(reply, { promoteLongs: true, promoteValues: true }));
}

export function describeHello(d: Document): ServerDescription {
  return {
    type: serverTypeOf(d),
    minWireVersion: num(d.minWireVersion, 0),
    maxWireVersion: num(d.maxWireVersion, 0),
    maxBsonObjectSize: num(d.maxBsonObjectSize, MAX_BSON_OBJECT_SIZE),
    maxMessageSizeBytes: num(d.maxMessageSizeBytes, MAX_MESSAGE_SIZE_BYTES),
    maxWriteBatchSize: num(d.maxWriteBatchSize, MAX_WRITE_BATCH_SIZE),
    logicalSessionTimeoutMinutes: d.logicalSessionTimeoutMinutes == null ? undefined : num(d.logicalSessionTimeoutMinutes, 30),
    writable: d.isWritablePrimary === true || d.ismaster === true,
    compression: Array.isArray(d.compression) ? d.compression.filter((c: unknown): c is string => typeof c === 'string') : [],
    setName: typeof d.setName === 'string' ? d.setName : undefined,
  };
}
