import type { Document } from 'bson';
import { ServerAddress } from '../upstream/address';
import { serverTypeOf, type ServerType } from '../upstream/server-description';

/** What kind of server a member is, as the SDAM specification names them. */
export type MemberType = ServerType;

/** The monitor's latest view of one upstream server. */
export interface MemberDescription {
  readonly address: ServerAddress;
  readonly type: MemberType;
  /** The server's last hello reply, as it sent it (member addresses are real ones). */
  readonly hello: Document | undefined;
  readonly rttMs: number | undefined;
  readonly error: string | undefined;
  readonly setName: string | undefined;
  /** hosts ∪ passives ∪ arbiters the member reports. */
  readonly reportedMembers: readonly ServerAddress[];
  readonly primary: ServerAddress | undefined;
  readonly setVersion: number | undefined;
  readonly electionId: string | undefined;
}

function addresses(v: unknown): ServerAddress[] {
  if (!Array.isArray(v)) return [];
  const out: ServerAddress[] = [];
  for (const h of v) {
    if (typeof h !== 'string') continue;
    try {
      out.push(ServerAddress.parse(h));
    } catch {
      // a malformed name in a hello reply is ignored, not fatal
    }
  }
  return out;
}

export function unknownMember(address: ServerAddress, error?: string): MemberDescription {
  return { address, type: 'Unknown', hello: undefined, rttMs: undefined, error, setName: undefined, reportedMembers: [], primary: undefined, setVersion: undefined, electionId: undefined };
}

export function describeMember(address: ServerAddress, hello: Document, rttMs: number): MemberDescription {
  const type = serverTypeOf(hello);
  let primary: ServerAddress | undefined;
  try {
    primary = typeof hello.primary === 'string' ? ServerAddress.parse(hello.primary) : undefined;
  } catch {
    primary = undefined;
  }
  return {
    address,
    type,
    hello,
    rttMs,
    error: undefined,
    setName: typeof hello.setName === 'string' ? hello.setName : undefined,
    reportedMembers: [...addresses(hello.hosts), ...addresses(hello.passives), ...addresses(hello.arbiters)],
    primary,
    setVersion: typeof hello.setVersion === 'number' ? hello.setVersion : undefined,
    electionId: hello.electionId ? String(hello.electionId) : undefined,
  };
}
