import { z } from 'zod';
import { hostPort, port } from './kit';

/** What deployment is behind the proxy and how it is presented, and the routing state kept for it (cursor routes, transaction pins). */

export const topology = z.strictObject({
  mode: z.enum(['single', 'mongos', 'replset']).default('single').describe('`single`: one upstream server behind one address, presented as a mongos (or as a standalone over a standalone: see [What the proxy address presents](mongodb-semantics.md#what-the-proxy-address-presents)); `mongos`: one address presented the same way over a monitored replica set or mongos fleet, the proxy selecting servers; `replset`: one proxy address per replica-set member (see [Replica sets](mongodb-semantics.md#replica-sets))'),
  heartbeatMs: z.number().int().min(100).default(2000).describe('how often each upstream server is checked over its own heartbeat connection (every mode: readiness and `/stats` use it); in mongos and replset modes also at once after a "not primary" error'),
  advertiseHost: z.string().min(1).default('127.0.0.1').describe('host put in the proxy addresses clients are told about'),
  memberPorts: z.tuple([port, port]).default([27017, 27031]).describe('ports for the members\' proxy addresses, first and last, handed out in discovery order (`[0,0]`: any free port)'),
  advertise: z.record(hostPort, hostPort).default({}).describe('members advertised at fixed addresses instead of proxy ports, `{"real:port": "advertised:port"}` (e.g. one Envoy listener per member)'),
}).prefault({});

export const cursors = z.strictObject({
  maxRoutes: z.number().int().min(1).default(100_000).describe('cursor routes remembered; the least recently used is evicted'),
  idleTtlMs: z.number().int().min(1000).default(15 * 60_000).describe('a cursor route unused this long is forgotten'),
}).prefault({});

export const transactions = z.strictObject({
  maxPins: z.number().int().min(1).default(100_000).describe('transactions pinned to a server at once (mongos mode); the least recently used is evicted'),
  idleTimeoutMs: z.number().int().min(1000).default(2 * 60_000).describe('a transaction pin unused this long is dropped (mongod itself aborts a transaction after 60 s by default)'),
}).prefault({});
