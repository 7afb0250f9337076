import type { MemberDescription } from '../topology/member';
import type { ReadPreference } from '../wire/peek';

/**
 * Server selection for mongos mode (the Server Selection specification, reduced to what a
 * proxy needs): read preference mode, tag sets and maxStalenessSeconds over the monitored
 * replica-set members, then the latency window; for a fleet of mongos routers, any router
 * in the latency window. `pick` chooses among the eligible (e.g. the least busy).
 */
const LOCAL_THRESHOLD_MS = 15;

function lastWrite(m: MemberDescription): number | undefined {
  const d = (m.hello?.lastWrite as { lastWriteDate?: Date } | undefined)?.lastWriteDate;
  return d instanceof Date ? d.getTime() : undefined;
}

/** Staleness of a secondary, in seconds (SDAM: primary's last write minus its own, plus a heartbeat). */
function stalenessSeconds(s: MemberDescription, primary: MemberDescription | undefined, heartbeatMs: number, secondaries: MemberDescription[]): number {
  const own = lastWrite(s) ?? 0;
  if (primary) return ((lastWrite(primary) ?? own) - own + heartbeatMs) / 1000;
  const newest = Math.max(...secondaries.map((x) => lastWrite(x) ?? 0));
  return (newest - own + heartbeatMs) / 1000;
}

function matchesTags(m: MemberDescription, set: Record<string, string>): boolean {
  const tags = (m.hello?.tags ?? {}) as Record<string, string>;
  return Object.entries(set).every(([k, v]) => tags[k] === v);
}

function withinLatency(candidates: MemberDescription[]): MemberDescription[] {
  if (candidates.length === 0) return candidates;
  const best = Math.min(...candidates.map((c) => c.rttMs ?? Number.POSITIVE_INFINITY));
  return candidates.filter((c) => (c.rttMs ?? Number.POSITIVE_INFINITY) <= best + LOCAL_THRESHOLD_MS);
}

function eligibleSecondaries(members: MemberDescription[], rp: ReadPreference, heartbeatMs: number): MemberDescription[] {
  const primary = members.find((m) => m.type === 'RSPrimary');
  let secondaries = members.filter((m) => m.type === 'RSSecondary');
  if (rp.maxStalenessSeconds !== undefined && rp.maxStalenessSeconds > 0) {
    const all = secondaries;
    secondaries = secondaries.filter((s) => stalenessSeconds(s, primary, heartbeatMs, all) <= rp.maxStalenessSeconds!);
  }
  if (rp.tags.length === 0) return secondaries;
  for (const set of rp.tags) {
    const matched = secondaries.filter((s) => matchesTags(s, set));
    if (matched.length > 0) return matched;
  }
  return [];
}

export function selectServer(
  members: readonly MemberDescription[],
  rp: ReadPreference | undefined,
  heartbeatMs: number,
  pick: (eligible: MemberDescription[]) => MemberDescription,
): MemberDescription | undefined {
  const known = members.filter((m) => m.type !== 'Unknown');
  const routers = known.filter((m) => m.type === 'Mongos');
  // A fleet of mongos: they route reads themselves (the read preference travels with the command).
  if (routers.length > 0) return pickFrom(withinLatency(routers), pick);
  const primary = known.find((m) => m.type === 'RSPrimary');
  const standalone = known.find((m) => m.type === 'Standalone');
  if (standalone) return standalone;
  const mode = rp?.mode ?? 'primary';
  const secondaries = (): MemberDescription[] => withinLatency(eligibleSecondaries(known, rp ?? { mode, tags: [], maxStalenessSeconds: undefined, problem: undefined }, heartbeatMs));
  switch (mode) {
    case 'primary': return primary;
    case 'primaryPreferred': return primary ?? pickFrom(secondaries(), pick);
    case 'secondary': return pickFrom(secondaries(), pick);
    case 'secondaryPreferred': return pickFrom(secondaries(), pick) ?? primary;
    case 'nearest': {
      const eligible = [...eligibleSecondaries(known, rp!, heartbeatMs), ...(primary && (rp!.tags.length === 0 || rp!.tags.some((t) => matchesTags(primary, t))) ? [primary] : [])];
      return pickFrom(withinLatency(eligible), pick);
    }
    default: return primary;
  }
}

function pickFrom(eligible: MemberDescription[], pick: (e: MemberDescription[]) => MemberDescription): MemberDescription | undefined {
  return eligible.length === 0 ? undefined : pick(eligible);
}
