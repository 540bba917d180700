/**
 * VM enrollment on the zone REST API (docs/vm.md):
 *
 *   GET  /api/v1/vm/bundle     the trust bundle and the fingerprint to pin (public)
 *   POST /api/v1/vm/join       Authorization: Bearer <vm join token>; CSR in, certificate and WorkloadEntry out
 *   POST /api/v1/vm/heartbeat  signed with the VM's certificate; probe state in
 *   POST /api/v1/vm/leave      signed with the VM's certificate; deregister and revoke
 *
 * The routes are `public` for the router: each authenticates its caller
 * itself (the join token, or the certificate proof of vm-request-proof.ts).
 * Bodies are checked field by field; errors name the field.
 */

import type { IncomingMessage } from 'node:http';
import { bearerToken } from '../../core/api/auth.js';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { parseJsonBody, readBody } from '../../core/http/body.js';
import { sendJson } from '../../core/http/respond.js';
import type { Router } from '../../core/http/router.js';
import { isEndpointAddress } from '../../core/resource/endpoint-address.js';
import { parseWorkloadLabels } from '../../core/resource/workload-labels.js';
import { isDns1123Label, isDns1123Subdomain } from '../../core/resource/validate.js';
import type { VmRegistration } from './vm-entries.js';
import type { ProvenVm } from './vm-request-proof.js';
import { firstRootFingerprint } from './vm-token-kind.js';

const MAX_BODY_BYTES = 64 * 1024;
const MAX_CSR_LENGTH = 16 * 1024;

export interface JoinBody {
  csrPem: string;
  address: string;
  inboundPort: number;
  servicePort?: number;
  labels: Record<string, string>;
  hostname?: string;
  certTtlSeconds?: number;
}

export interface HeartbeatBody {
  workloadEntry: string;
  namespace: string;
  workloadGroup: string;
  /** The probe's verdict (true when the group has no probe). */
  healthy: boolean;
  message?: string;
  /** RFC 3339 time of the VM's join (decides duplicates if the entry must be written again). */
  joinedAt: string;
  keyFingerprint: string;
  registration: VmRegistration;
}

export interface VmRouteHandlers {
  bundle(): { zone: string; trustDomain: string; roots: string[] };
  join(token: string, body: JoinBody): Promise<unknown>;
  heartbeat(proof: ProvenVm, body: HeartbeatBody): Promise<unknown>;
  leave(proof: ProvenVm, body: { workloadEntry: string; namespace: string }): Promise<unknown>;
  verifyProof(req: IncomingMessage, raw: Buffer): ProvenVm;
}

type Obj = Record<string, unknown>;

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `${field}: ${message}`, { field });
}

function objectBody(raw: unknown, what: string, known: readonly string[]): Obj {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `the ${what} body must be a JSON object`);
  }
  const body = raw as Obj;
  for (const field of Object.keys(body)) {
    if (!known.includes(field)) throw invalid(field, `unknown field (known: ${known.join(', ')})`);
  }
  return body;
}

function requiredString(body: Obj, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '') throw invalid(field, 'is required (a non-empty string)');
  return value;
}

function optionalString(body: Obj, field: string, max = 253): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '' || value.length > max) {
    throw invalid(field, `must be a non-empty string of at most ${max} characters`);
  }
  return value;
}

function port(body: Obj, field: string, required: boolean): number | undefined {
  const value = body[field];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, 'must be a port number 1-65535');
  }
  return value;
}

/** An IP address or DNS name other workloads can reach the VM at. */
function address(body: Obj, field: string): string {
  const value = requiredString(body, field);
  if (!isEndpointAddress(value)) {
    throw invalid(field, `"${value}" is not an IP address or DNS name`);
  }
  if (value === '0.0.0.0' || value === '::') {
    throw invalid(field, `"${value}" is not an address others can reach: give the VM's own address`);
  }
  return value;
}

export function parseJoinBody(raw: unknown): JoinBody {
  const body = objectBody(raw, 'join', [
    'csrPem',
    'address',
    'inboundPort',
    'servicePort',
    'labels',
    'hostname',
    'certTtlSeconds',
  ]);
  const csrPem = requiredString(body, 'csrPem');
  if (csrPem.length > MAX_CSR_LENGTH) throw invalid('csrPem', `longer than ${MAX_CSR_LENGTH} bytes`);
  const ttl = body.certTtlSeconds;
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1)) {
    throw invalid('certTtlSeconds', 'must be a whole number of seconds, at least 1');
  }
  const servicePort = port(body, 'servicePort', false);
  const hostname = optionalString(body, 'hostname');
  return {
    csrPem,
    address: address(body, 'address'),
    inboundPort: port(body, 'inboundPort', false) ?? 15006,
    labels: parseWorkloadLabels(body.labels, 'labels'),
    ...(servicePort === undefined ? {} : { servicePort }),
    ...(hostname === undefined ? {} : { hostname }),
    ...(typeof ttl === 'number' ? { certTtlSeconds: ttl } : {}),
  };
}

export function parseHeartbeatBody(raw: unknown): HeartbeatBody {
  const body = objectBody(raw, 'heartbeat', [
    'workloadEntry',
    'namespace',
    'workloadGroup',
    'healthy',
    'message',
    'joinedAt',
    'keyFingerprint',
    'registration',
  ]);
  const workloadEntry = requiredString(body, 'workloadEntry');
  if (!isDns1123Subdomain(workloadEntry)) throw invalid('workloadEntry', 'is not a DNS-1123 name');
  const namespace = requiredString(body, 'namespace');
  if (!isDns1123Label(namespace)) throw invalid('namespace', 'is not a DNS-1123 label');
  const workloadGroup = requiredString(body, 'workloadGroup');
  if (!isDns1123Subdomain(workloadGroup)) throw invalid('workloadGroup', 'is not a DNS-1123 name');
  if (typeof body.healthy !== 'boolean') throw invalid('healthy', 'must be true or false');
  const message = optionalString(body, 'message', 1024);
  const joinedAt = requiredString(body, 'joinedAt');
  if (Number.isNaN(Date.parse(joinedAt))) throw invalid('joinedAt', 'is not an RFC 3339 time');
  const keyFingerprint = requiredString(body, 'keyFingerprint');
  if (!/^[0-9a-f]{64}$/.test(keyFingerprint)) throw invalid('keyFingerprint', 'must be 64 hex digits');
  const reg = objectBody(body.registration ?? {}, 'registration', [
    'address',
    'inboundPort',
    'servicePort',
    'labels',
    'hostname',
  ]);
  const servicePort = port(reg, 'servicePort', false);
  const hostname = optionalString(reg, 'hostname');
  return {
    workloadEntry,
    namespace,
    workloadGroup,
    healthy: body.healthy,
    ...(message === undefined ? {} : { message }),
    joinedAt,
    keyFingerprint,
    registration: {
      address: address(reg, 'address'),
      inboundPort: port(reg, 'inboundPort', false) ?? 15006,
      labels: parseWorkloadLabels(reg.labels, 'labels'),
      ...(servicePort === undefined ? {} : { servicePort }),
      ...(hostname === undefined ? {} : { hostname }),
    },
  };
}

function parseLeaveBody(raw: unknown): { workloadEntry: string; namespace: string } {
  const body = objectBody(raw, 'leave', ['workloadEntry', 'namespace']);
  const workloadEntry = requiredString(body, 'workloadEntry');
  if (!isDns1123Subdomain(workloadEntry)) throw invalid('workloadEntry', 'is not a DNS-1123 name');
  const namespace = requiredString(body, 'namespace');
  if (!isDns1123Label(namespace)) throw invalid('namespace', 'is not a DNS-1123 label');
  return { workloadEntry, namespace };
}

export function registerVmRoutes(router: Router, handlers: VmRouteHandlers): void {
  router
    .add('GET', '/api/v1/vm/bundle', 'public', (ctx) => {
      const bundle = handlers.bundle();
      if (bundle.roots.length === 0) {
        throw new MeshError(ErrorCodes.UNAVAILABLE, 'the zone CA is not ready yet (waiting for global)');
      }
      sendJson(ctx.res, 200, { ...bundle, caFingerprint: firstRootFingerprint(bundle.roots.join('\n')) });
    })
    .add('POST', '/api/v1/vm/join', 'public', async (ctx) => {
      const token = bearerToken(ctx.req);
      const body = parseJoinBody(parseJsonBody(await readBody(ctx.req, MAX_BODY_BYTES)));
      const answer = (await handlers.join(token, body)) as { alreadyJoined?: boolean };
      sendJson(ctx.res, answer.alreadyJoined === true ? 200 : 201, answer);
    })
    .add('POST', '/api/v1/vm/heartbeat', 'public', async (ctx) => {
      const raw = await readBody(ctx.req, MAX_BODY_BYTES);
      const proof = handlers.verifyProof(ctx.req, raw);
      sendJson(ctx.res, 200, await handlers.heartbeat(proof, parseHeartbeatBody(parseJsonBody(raw))));
    })
    .add('POST', '/api/v1/vm/leave', 'public', async (ctx) => {
      const raw = await readBody(ctx.req, MAX_BODY_BYTES);
      const proof = handlers.verifyProof(ctx.req, raw);
      sendJson(ctx.res, 200, await handlers.leave(proof, parseLeaveBody(parseJsonBody(raw))));
    });
}
