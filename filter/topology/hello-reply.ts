import type { Document } from 'bson';
import type { ServerDescription, ServerType } from '../upstream/server-description';
import type { CompressorName } from '../wire/compression';

/** Highest wire version whose protocol mongoplex understands (MongoDB 8.0). */
export const PROXY_MAX_WIRE_VERSION = 25;

/** Spellings of the handshake command; the proxy answers these itself and never forwards them. */
export function isHelloCommand(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'hello' || n === 'ismaster';
}

/** Per-connection facts every hello reply carries. */
export interface HelloFacts {
  readonly connectionId: number;
  readonly compression: readonly CompressorName[];
  readonly maxMessageSizeBytes: number;
}

export interface HelloContext extends HelloFacts {
  readonly upstream: ServerDescription;
}

/**
 * The head of every hello reply: `helloOk` when asked, then the writable flag under the
 * spelling the request used (`ismaster` for isMaster, `isWritablePrimary` for hello).
 */
export function helloReplyHead(request: Document, writable: boolean): Document {
  const reply: Document = {};
  if (request.helloOk === true) reply.helloOk = true;
  if (Object.keys(request)[0]?.toLowerCase() === 'ismaster') reply.ismaster = writable;
  else reply.isWritablePrimary = writable;
  return reply;
}

/** The tail of every hello reply: what is true of this client connection to the proxy. */
export function finishHelloReply(reply: Document, facts: HelloFacts): Document {
  reply.localTime = new Date();
  reply.connectionId = facts.connectionId;
  if (facts.compression.length > 0) reply.compression = [...facts.compression];
  reply.ok = 1;
  return reply;
}

/**
 * What the one proxy address of single and mongos modes is presented as, from what the server
 * behind it is. A standalone stays a standalone: drivers then put no `txnNumber` on writes (a
 * standalone refuses it: no retryable writes) and run no transactions, exactly as directly.
 * Whatever supports those (a replica-set member, a mongos) is presented as a mongos, so
 * drivers keep to this one address and leave server selection to the proxy.
 */
export type PresentedType = 'Standalone' | 'Mongos';

export function presentedType(upstream: ServerType): PresentedType {
  return upstream === 'Standalone' ? 'Standalone' : 'Mongos';
}

/**
 * The answer to hello/isMaster on the one proxy address: a mongos (`msg: "isdbgrid"`) or a
 * standalone (see presentedType), with the upstream's limits and session support. No
 * topologyVersion: the proxy does not serve awaitable hello, so drivers poll.
 */
export function buildHelloReply(request: Document, ctx: HelloContext): Document {
  const up = ctx.upstream;
  const reply = helloReplyHead(request, true);
  if (presentedType(up.type) === 'Mongos') reply.msg = 'isdbgrid';
  reply.maxBsonObjectSize = up.maxBsonObjectSize;
  reply.maxMessageSizeBytes = Math.min(up.maxMessageSizeBytes, ctx.maxMessageSizeBytes);
  reply.maxWriteBatchSize = up.maxWriteBatchSize;
  if (up.logicalSessionTimeoutMinutes !== undefined) reply.logicalSessionTimeoutMinutes = up.logicalSessionTimeoutMinutes;
  reply.minWireVersion = Math.min(up.minWireVersion, PROXY_MAX_WIRE_VERSION);
  reply.maxWireVersion = Math.min(up.maxWireVersion, PROXY_MAX_WIRE_VERSION);
  reply.readOnly = false;
  return finishHelloReply(reply, ctx);
}
