import { z } from 'zod';
import { ms, port } from './kit';

/** The admin endpoint and what /readyz requires. */

export const readiness = z.strictObject({
  requires: z.enum(['writable', 'reachable']).default('writable').describe('what `/readyz` needs from the upstream: `writable` (a primary, mongos or standalone answered the last heartbeat) or `reachable` (any server answered; e.g. mongoplex in front of a secondary for reads)'),
  maxCheckoutWaitMs: z.number().int().min(1).default(5000).describe('a pool counts as saturated while a request has waited this long for one of its connections'),
  saturatedForMs: ms.default(10_000).describe('`/readyz` fails once a pool has stayed saturated this long without a break'),
}).prefault({});

export const admin = z.strictObject({
  host: z.string().default('127.0.0.1').describe('admin endpoint address; a non-loopback address needs `admin.token` (refused at start otherwise)'),
  port: port.nullable().default(null).describe('admin endpoint port (`null`: disabled, `0`: any free port)'),
  token: z.string().min(16, 'use at least 16 characters').nullable().default(null).describe('bearer token the control endpoints (`POST /pause`, `/resume`, `/drain`, `/reload`, `/capture/*`) require (≥ 16 characters); without one the admin endpoint must be on a loopback address. Never shown in `/stats`, logs or reload results'),
  maxPauseMs: z.number().int().min(1).default(5 * 60_000).describe('a pause ends by itself after this long (a `POST /pause` may ask for less), so a forgotten pause cannot hold clients forever'),
}).prefault({});
