import { BSON, type Document } from 'bson';
import type { ServerAddress } from '../upstream/address';
import { describeHello, type ServerDescription, type ServerType } from '../upstream/server-description';
import type { CommandInfo } from '../wire/peek';
import { ErrorCode, errorDocument } from '../wire/errors';
import type { ServerSet } from './server-set';
import type { TopologyMonitor } from './monitor';
import type { AddressMap } from './address-map';
import type { MemberDescription } from './member';
import type { UpstreamPool } from '../upstream/pool';
import { buildHelloReply, finishHelloReply, helloReplyHead, presentedType, PROXY_MAX_WIRE_VERSION, type HelloFacts } from './hello-reply';

/**
 * What clients are told about the deployment, per topology mode: the hello reply, and the
 * rewriting of replies that name members.
 */
export interface Presentation {
  hello(request: Document, facts: HelloFacts, member: ServerAddress | undefined): Promise<Document>;
  /** Rewrites a forwarded reply body that names members (replSetGetStatus); undefined: unchanged. */
  rewriteReply(command: string, body: Buffer): Buffer | undefined;
  /**
   * The refusal the presented server would give a command that the servers behind it may
   * accept (a mongos's read-preference rules, its lack of replSet* commands); undefined: the
   * command goes on. Asked only of commands for which `mayRefuse` is true.
   */
  refusal(cmd: CommandInfo): Document | undefined;
}

/** replSetGetStatus, replSetStepDown, replSetReconfig, …: replica-set member commands. */
function isReplicaSetCommand(name: string): boolean {
  return name.startsWith('replSet');
}

/** The one check on the path of every message: whether `refusal` has anything to look at. */
export function mayRefuse(cmd: CommandInfo): boolean {
  return cmd.readPreference !== undefined || isReplicaSetCommand(cmd.name);
}

/** mongos adds this to heartbeatFrequencyMS for the smallest maxStalenessSeconds over a replica set (the idle write period). */
const IDLE_WRITE_PERIOD_MS = 10_000;

/**
 * single and mongos modes: one proxy address for the whole deployment, presented as what the
 * server that takes its writes is (a mongos, or a standalone: see presentedType). Learned from
 * that server's latest heartbeat, so what clients are told follows it (a standalone restarted
 * as a replica-set member is a mongos at the drivers' next heartbeat); before the first
 * heartbeat, from a pooled connection's handshake.
 */
export class SingleAddressPresentation implements Presentation {
  constructor(private readonly servers: ServerSet, private readonly monitor: TopologyMonitor, private readonly heartbeatMs: number) {}

  async hello(request: Document, facts: HelloFacts): Promise<Document> {
    return buildHelloReply(request, { upstream: await this.upstream(), ...facts });
  }

  /** The pool of the server behind the proxy address, and that server's latest heartbeat (undefined before one answered). */
  private behind(): { pool: UpstreamPool; heartbeat: MemberDescription | undefined } {
    const pool = this.servers.writable();
    const heartbeat = this.monitor.description(pool.address);
    return { pool, heartbeat: heartbeat?.hello ? heartbeat : undefined };
  }

  /** The server behind the proxy address, as it last described itself. */
  private upstream(): Promise<ServerDescription> {
    const { pool, heartbeat } = this.behind();
    return heartbeat ? Promise.resolve(describeHello(heartbeat.hello!)) : pool.describe();
  }

  /** The type of the server behind the proxy address now (Unknown before any handshake). */
  private upstreamType(): ServerType {
    const { pool, heartbeat } = this.behind();
    return heartbeat && heartbeat.type !== 'Unknown' ? heartbeat.type : pool.description?.type ?? 'Unknown';
  }

  /**
   * Presented as a mongos, the proxy refuses what a mongos refuses: replSet* commands
   * (CommandNotFound), and a `$readPreference` as a mongos does: its parse
   * rules (peek reads them), and over a replica set a maxStalenessSeconds below the
   * heartbeat plus the idle write period, which no staleness estimate could honour.
   */
  refusal(cmd: CommandInfo): Document | undefined {
    if (isReplicaSetCommand(cmd.name)) {
      // A mongos has no replSet* commands; forwarded, they would name the real members.
      return presentedType(this.upstreamType()) === 'Mongos' ? errorDocument(ErrorCode.CommandNotFound, `no such command: '${cmd.name}'`) : undefined;
    }
    const rp = cmd.readPreference;
    const staleness = rp?.maxStalenessSeconds ?? 0;
    if (rp === undefined || (rp.problem === undefined && staleness === 0)) return undefined;
    const type = this.upstreamType();
    if (presentedType(type) !== 'Mongos') return undefined;
    if (rp.problem) return errorDocument(rp.problem.error, rp.problem.message);
    const lowerBound = Math.floor((this.heartbeatMs + IDLE_WRITE_PERIOD_MS) / 1000);
    if (type.startsWith('RS') && staleness < lowerBound) {
      return errorDocument(ErrorCode.MaxStalenessOutOfRange, `Parameter maxStalenessSeconds cannot be less than ${lowerBound}`);
    }
    return undefined;
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

  /** Each member validates what it is sent itself, as the server it is. */
  refusal(): Document | undefined {
    return undefined;
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
