import { BSON, type Document } from 'bson';
import { newRequestId, OpCode, type WireMessage } from '../wire/header';
import { encodeOpReply, ReplyFlag } from '../wire/legacy';
import { encodeOpMsg } from '../wire/opmsg';
import type { CommandInfo } from '../wire/peek';

export { errorDocument } from '../wire/errors';

/**
 * Labels a driver needs to retry correctly when the proxy fails a command whose outcome on
 * the server is unknown (the upstream connection was lost mid-request, or never obtained).
 */
export function failureLabels(cmd: CommandInfo | undefined): string[] {
  if (!cmd) return [];
  const name = cmd.name.toLowerCase();
  if (cmd.inTransaction) return name === 'committransaction' ? ['UnknownTransactionCommitResult'] : ['TransientTransactionError'];
  if (cmd.hasTxnNumber) return ['RetryableWriteError'];
  return [];
}

/** Encodes a reply document in the form the request expects (OP_MSG, or OP_REPLY for OP_QUERY). */
export function encodeReply(request: WireMessage, doc: Document, options: { queryFailure?: boolean } = {}): Buffer {
  const body = BSON.serialize(doc);
  if (request.header.opCode === OpCode.QUERY || request.header.opCode === OpCode.GET_MORE) {
    return encodeOpReply(newRequestId(), request.header.requestId, [body], options.queryFailure ? ReplyFlag.queryFailure : 0);
  }
  return encodeOpMsg(newRequestId(), request.header.requestId, body);
}
