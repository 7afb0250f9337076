import { BSON, type Document } from 'bson';
import { ErrorCode, protocolError } from './errors';
import { OpCode, type WireMessage } from './header';
import { parseOpReply } from './legacy';
import { parseOpMsg } from './opmsg';

/**
 * Full deserialization, for the few small documents the proxy reads whole (handshakes,
 * getLastError answers); everything on the hot path is peeked lazily instead (peek.ts).
 */
export function deserializeCommand(body: Buffer): Document {
  try {
    return BSON.deserialize(body, { promoteLongs: false });
  } catch (err) {
    throw protocolError(`invalid BSON: ${(err as Error).message}`, ErrorCode.InvalidBSON);
  }
}

/** The document of a command reply (OP_MSG body or first OP_REPLY document), if readable. */
export function replyDocument(reply: WireMessage): Document | undefined {
  try {
    if (reply.header.opCode === OpCode.MSG) return deserializeCommand(parseOpMsg(reply).body);
    if (reply.header.opCode === OpCode.REPLY) {
      const first = parseOpReply(reply).documents[0];
      return first ? deserializeCommand(first) : undefined;
    }
  } catch {
    // unreadable: the caller learns nothing; the client still gets the server's bytes
  }
  return undefined;
}
