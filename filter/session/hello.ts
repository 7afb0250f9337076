import { BSON, type Document } from 'bson';
import type { ServerDescription } from '../upstream/server-description';
import type { CompressorName } from '../wire/compression';
import { ErrorCode, protocolError } from '../wire/errors';

/** Highest wire version whose protocol mongoplex understands (MongoDB 8.0). */
export const PROXY_MAX_WIRE_VERSION = 25;

/** Spellings of the handshake command; the proxy answers these itself and never forwards them. */
export function isHelloCommand(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'hello' || n === 'ismaster';
}

export interface HelloContext {
  readonly upstream: ServerDescription;
  readonly connectionId: number;
  readonly compression: readonly CompressorName[];
  readonly maxMessageSizeBytes: number;
}

/**
 * The proxy's answer to hello/isMaster: it presents itself as a mongos, so drivers route every
 * operation through this one address and leave server selection to the proxy. No
 * topologyVersion: the proxy does not serve awaitable hello, so drivers poll.
 */
export function buildHelloReply(request: Document, ctx: HelloContext): Document {
  const legacy = Object.keys(request)[0]?.toLowerCase() === 'ismaster';
  const up = ctx.upstream;
  const reply: Document = {};
  if (request.helloOk === true) reply.helloOk = true;
  if (legacy) reply.ismaster = true;
  else reply.isWritablePrimary = true;
  reply.msg = 'isdbgrid';
  reply.maxBsonObjectSize = up.maxBsonObjectSize;
  reply.maxMessageSizeBytes = Math.min(up.maxMessageSizeBytes, ctx.maxMessageSizeBytes);
  reply.maxWriteBatchSize = up.maxWriteBatchSize;
  reply.localTime = new Date();
  if (up.logicalSessionTimeoutMinutes !== undefined) reply.logicalSessionTimeoutMinutes = up.logicalSessionTimeoutMinutes;
  reply.connectionId = ctx.connectionId;
  reply.minWireVersion = Math.min(up.minWireVersion, PROXY_MAX_WIRE_VERSION);
  reply.maxWireVersion = Math.min(up.maxWireVersion, PROXY_MAX_WIRE_VERSION);
  reply.readOnly = false;
  if (ctx.compression.length > 0) reply.compression = [...ctx.compression];
  reply.ok = 1;
  return reply;
}

/** Full deserialization, for the few small documents the proxy answers itself. */
export function deserializeCommand(body: Buffer): Document {
  try {
    return BSON.deserialize(body, { promoteLongs: false });
  } catch (err) {
    throw protocolError(`invalid BSON: ${(err as Error).message}`, ErrorCode.InvalidBSON);
  }
}
