import { BSON, type Document } from 'bson';
import type { ServerAddress } from '../upstream/address';
import type { ServerSet } from './server-set';
import type { TopologyMonitor } from './monitor';
import type { AddressMap } from './address-map';
import { buildHelloReply, finishHelloReply, helloReplyHead, PROXY_MAX_WIRE_VERSION, type HelloFacts } from './hello-reply';

/**
 * What clients are told about the deployment, per topology mode: the hello reply, and the
 * rewriting of replies that name members.
 */
export interface Presentation {
  hello(request: Document, facts: HelloFacts, member: ServerAddress | undefined): Promise<Document>;
  /** Rewrites a forwarded reply body that names members (replSetGetStatus); undefined: unchanged. */
  rewriteReply(command: string, body: Buffer): Buffer | undefined;
}

/** single and mongos modes: the proxy presents itself as one mongos. */
export class MongosPresentation implements Presentation {
  constructor(private readonly servers: ServerSet) {}

  async hello(request: Document, facts: HelloFacts): Promise<Document> {
    const upstream = await this.servers.writable().describe();
    return buildHelloReply(request, { upstream, ...facts });
  }

  rewriteReply(): Buffer | undefined {
    return undefined;
  }
}

function mapList(v: unknown, map: (a: string) => string | undefined): unknown {
  if (!Array.isArray(v)) return v;
  return v.map((h) => (typeof h === 'string' ? map(h) : undefined)).filter((h) => h !== undefined);
}

/**
 * Replica set (dvara model): one proxy address per member. hello is answered from the
 * monitored member's own reply with every member address replaced by its proxy address, so
 * drivers do their own server selection and only ever dial the proxy.
 */
export class ReplicaSetPresentation implements Presentation {
  constructor(private readonly monitor: TopologyMonitor, private readonly addresses: AddressMap) {}

  private map = (real: string): string | undefined => this.addresses.proxyAddressOf(real);

  async hello(request: Document, facts: HelloFacts, member: ServerAddress | undefined): Promise<Document> {
    const d = member && this.monitor.description(member);
    if (!d?.hello) throw new Error(`member ${member ?? '(none)'} has not answered its monitor yet${d?.error ? `: ${d.error}` : ''}`);
    const src = d.hello;
    const reply = helloReplyHead(request, src.isWritablePrimary === true || src.ismaster === true);
    for (const [k, v] of Object.entries(src)) {
      switch (k) {
        case 'ismaster': case 'isWritablePrimary': case 'helloOk': case 'topologyVersion': case 'connectionId':
        case 'localTime': case 'compression': case 'saslSupportedMechs': case 'speculativeAuthenticate': case 'ok':
        case '$clusterTime': case 'operationTime':
          break;
        case 'hosts': case 'passives': case 'arbiters':
          reply[k] = mapList(v, this.map);
          break;
        case 'primary': case 'me':
          if (typeof v === 'string' && this.map(v)) reply[k] = this.map(v);
          break;
        case 'maxWireVersion': case 'minWireVersion':
          reply[k] = Math.min(Number(v), PROXY_MAX_WIRE_VERSION);
          break;
        case 'maxMessageSizeBytes':
          reply[k] = Math.min(Number(v), facts.maxMessageSizeBytes);
          break;
        default:
          reply[k] = v;
      }
    }
    return finishHelloReply(reply, facts);
  }

  rewriteReply(command: string, body: Buffer): Buffer | undefined {
    if (command.toLowerCase() !== 'replsetgetstatus') return undefined;
    const doc = BSON.deserialize(body, { promoteLongs: false, promoteValues: false });
    const fix = (v: unknown): unknown => (typeof v === 'string' ? (this.map(v) ?? v) : v);
    for (const k of ['syncSourceHost', 'syncingTo']) if (k in doc) doc[k] = fix(doc[k]);
    if (Array.isArray(doc.members)) {
      for (const m of doc.members as Document[]) {
        for (const k of ['name', 'syncSourceHost', 'syncingTo']) if (k in m) m[k] = fix(m[k]);
      }
    }
    return Buffer.from(BSON.serialize(doc));
  }
}
