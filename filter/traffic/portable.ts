import { createHash } from 'node:crypto';
import { BSON, type Document } from 'bson';

/**
 * A command made fit for another deployment: what ties it to the cluster it was sent to (the
 * signed `$clusterTime`, causal-consistency `afterClusterTime`, which would wait for a time the
 * other cluster may never reach) is removed. Used by replay and by the mirror.
 */
export function portableCommand(doc: Document): Document {
  delete doc.$clusterTime;
  const rc = doc.readConcern as Document | undefined;
  if (rc && typeof rc === 'object') {
    delete rc.afterClusterTime;
    delete rc.afterOpTime;
    if (Object.keys(rc).length === 0) delete doc.readConcern;
  }
  return doc;
}

/** Reply fields that differ between deployments for the same answer. */
const VOLATILE_REPLY_FIELDS = ['$clusterTime', 'operationTime', '$configTime', '$topologyTime', 'lastCommittedOpTime', '$gleStats', 'electionId', 'opTime'];

/**
 * A digest of what a reply says, not how one deployment said it: volatile fields dropped, the
 * cursor's id ignored (each server numbers its own cursors), and an error reduced to its code.
 */
export function replyDigest(body: Buffer): { digest: string; ok: boolean; code: number | undefined } {
  const doc = BSON.deserialize(body, { promoteValues: false, promoteLongs: false });
  const ok = Number(doc.ok?.valueOf?.() ?? doc.ok) === 1;
  const code = doc.code === undefined ? undefined : Number(doc.code.valueOf());
  let canonical: Document;
  if (!ok) canonical = { ok: 0, code };
  else {
    for (const f of VOLATILE_REPLY_FIELDS) delete doc[f];
    if (doc.cursor && typeof doc.cursor === 'object') delete (doc.cursor as Document).id;
    canonical = doc;
  }
  return { digest: createHash('sha256').update(BSON.serialize(canonical)).digest('hex'), ok, code };
}
