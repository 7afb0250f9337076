import { createHash } from 'node:crypto';
import { BSON } from 'bson';
import { elements, nameOf, numberOf, T_DOCUMENT } from '../wire/peek';
import { documentOf, element, elementBytes, valueBytes } from '../wire/raw-bson';

/**
 * A command body made fit for another deployment: what ties it to the cluster it was sent to
 * (the signed `$clusterTime`, causal-consistency `readConcern.afterClusterTime`, which would
 * wait for a time the other cluster may never reach) is removed, and so is any top-level field
 * in `alsoDrop`. Every other element is copied as sent. Used by replay and by the mirror.
 */
export function portableBody(body: Buffer, alsoDrop: readonly string[] = []): Buffer {
  const parts: Buffer[] = [];
  for (const e of elements(body)) {
    const name = nameOf(body, e);
    if (name === '$clusterTime' || alsoDrop.includes(name)) continue;
    if (name === 'readConcern' && e[0] === T_DOCUMENT) {
      const rc = BSON.deserialize(valueBytes(body, e), { promoteValues: false });
      delete rc.afterClusterTime;
      delete rc.afterOpTime;
      if (Object.keys(rc).length > 0) parts.push(element(T_DOCUMENT, name, Buffer.from(BSON.serialize(rc))));
      continue;
    }
    parts.push(elementBytes(body, e));
  }
  return documentOf(parts);
}

/** Reply fields that differ between deployments for the same answer. */
const VOLATILE_REPLY_FIELDS = new Set(['$clusterTime', 'operationTime', '$configTime', '$topologyTime', 'lastCommittedOpTime', '$gleStats', 'electionId', 'opTime']);

/**
 * A digest of what a reply says, not how one deployment said it: volatile fields left out, the
 * cursor's id ignored (each server numbers its own cursors), and an error reduced to its code.
 * Hashes the reply's raw element bytes (no decoding).
 */
export function replyDigest(body: Buffer): { digest: string; ok: boolean; code: number | undefined } {
  const hash = createHash('sha256');
  let ok = false;
  let code: number | undefined;
  for (const e of elements(body)) {
    const name = nameOf(body, e);
    if (name === 'ok') ok = numberOf(body, e) === 1;
    else if (name === 'code') code = Number(numberOf(body, e));
    if (VOLATILE_REPLY_FIELDS.has(name)) continue;
    if (name === 'cursor' && e[0] === T_DOCUMENT) {
      for (const c of elements(body, e[3])) if (nameOf(body, c) !== 'id') hash.update(elementBytes(body, c));
      continue;
    }
    hash.update(elementBytes(body, e));
  }
  const digest = ok ? hash.digest('hex') : createHash('sha256').update(`error ${code}`).digest('hex');
  return { digest, ok, code };
}
