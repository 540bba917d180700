/**
 * Universal workload registration on the zone REST API (5682):
 *
 *   POST   /api/v1/workloads                             register / re-register
 *   POST   /api/v1/workloads/{namespace}/{name}/heartbeat
 *   DELETE /api/v1/workloads/{namespace}/{name}           deregister
 *
 * The routes are public at the router level and authenticate inside with a
 * proxy token (`Authorization: Bearer`), whose claims bind the workload:
 * `ext.workload` (else `sub`) is its name, `ext.namespace` and
 * `ext.serviceAccount` its namespace and service account, `zone` this zone. A body may omit those fields or
 * repeat them; it may not change them. The registration becomes a
 * WorkloadEntry in the zone store, which the universal source watches.
 */

import type { TokenClaims } from '../../core/token/token.js';
import { bearerToken } from '../../core/api/auth.js';
import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import { parseJsonBody, readBody } from '../../core/http/body.js';
import { sendJson } from '../../core/http/respond.js';
import type { RequestContext, Router } from '../../core/http/router.js';
import { createLogger } from '../../core/log.js';
import type { Logger } from '../../core/log.js';
import type { Resource, StoredResource } from '../../core/resource/resource.js';
import { isEndpointAddress } from '../../core/resource/endpoint-address.js';
import { parseWorkloadLabels } from '../../core/resource/workload-labels.js';
import { isDns1123Label, isDns1123Subdomain, validateResource } from '../../core/resource/validate.js';
import type { Store } from '../../core/store/store.js';
import {
  DEFAULT_INBOUND_PORT,
  HEALTHY_ANNOTATION,
  HEARTBEAT_ANNOTATION,
  INBOUND_PORT_ANNOTATION,
  SERVICE_LABEL,
} from './discovery.js';

export interface UniversalRoutesDeps {
  store: Store;
  /** Verifies a proxy token (signature, expiry, revocation, kind); throws TOKEN_INVALID otherwise. */
  verifyProxyToken(token: string): TokenClaims;
  /** This zone's name: a proxy token issued for another zone is refused. */
  zone: string;
  logger?: Logger;
  /** Heartbeat interval the registration answer recommends. Default 10 s. */
  heartbeatIntervalSeconds?: number;
  /** Default 64 KiB. */
  maxBodyBytes?: number;
}

/** What a registration body may hold. */
interface RegistrationBody {
  name?: string;
  namespace?: string;
  address: string;
  ports: Record<string, number>;
  labels: Record<string, string>;
  serviceAccount?: string;
  locality?: string;
  weight?: number;
  inboundPort?: number;
  service?: string;
  healthy?: boolean;
}

interface Workload {
  name: string;
  namespace: string;
  serviceAccount: string;
}

const BODY_FIELDS = new Set([
  'name',
  'namespace',
  'address',
  'ports',
  'labels',
  'serviceAccount',
  'locality',
  'weight',
  'inboundPort',
  'service',
  'healthy',
]);
const WORKLOAD_API_VERSION = 'networking.istio.io/v1';
const MAX_CAS_RETRIES = 5;
const PORT_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `${field}: ${message}`, { field });
}

function forbidden(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.FORBIDDEN, message, { field });
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Checks a registration body field by field; errors name the body field. */
function parseRegistration(raw: unknown): RegistrationBody {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'the registration body must be a JSON object');
  }
  const body = raw as Record<string, unknown>;
  for (const field of Object.keys(body)) {
    if (!BODY_FIELDS.has(field)) {
      throw invalid(field, `unknown field (known: ${[...BODY_FIELDS].join(', ')})`);
    }
  }
  const optionalString = (field: string): string | undefined => {
    const value = body[field];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') throw invalid(field, 'must be a non-empty string');
    return value;
  };
  const name = optionalString('name');
  if (name !== undefined && !isDns1123Subdomain(name))
    throw invalid('name', `"${name}" is not a DNS-1123 name`);
  const namespace = optionalString('namespace');
  if (namespace !== undefined && !isDns1123Label(namespace)) {
    throw invalid('namespace', `"${namespace}" is not a DNS-1123 label`);
  }
  if (typeof body.address !== 'string' || body.address === '') throw invalid('address', 'is required');
  if (!isEndpointAddress(body.address))
    throw invalid('address', `"${body.address}" is not an IP address or DNS name`);
  const ports: Record<string, number> = {};
  if (body.ports !== undefined) {
    if (body.ports === null || typeof body.ports !== 'object' || Array.isArray(body.ports)) {
      throw invalid('ports', 'must be an object of port name to port number');
    }
    for (const [portName, port] of Object.entries(body.ports as Record<string, unknown>)) {
      if (!PORT_NAME.test(portName)) throw invalid(`ports.${portName}`, 'port names are DNS-1123 labels');
      if (!isPort(port)) throw invalid(`ports.${portName}`, 'must be an integer 1-65535');
      ports[portName] = port;
    }
  }
  const labels = parseWorkloadLabels(body.labels, 'labels');
  const serviceAccount = optionalString('serviceAccount');
  if (serviceAccount !== undefined && !isDns1123Subdomain(serviceAccount)) {
    throw invalid('serviceAccount', `"${serviceAccount}" is not a DNS-1123 name`);
  }
  const locality = optionalString('locality');
  if (locality !== undefined) {
    const parts = locality.split('/');
    if (parts.length > 3 || parts.some((p) => p === '' || /\s/.test(p))) {
      throw invalid('locality', 'must read region[/zone[/subzone]]');
    }
  }
  let weight: number | undefined;
  if (body.weight !== undefined) {
    if (
      typeof body.weight !== 'number' ||
      !Number.isInteger(body.weight) ||
      body.weight < 0 ||
      body.weight > 0xffffffff
    ) {
      throw invalid('weight', 'must be an integer 0-4294967295');
    }
    weight = body.weight;
  }
  let inboundPort: number | undefined;
  if (body.inboundPort !== undefined) {
    if (!isPort(body.inboundPort)) throw invalid('inboundPort', 'must be an integer 1-65535');
    inboundPort = body.inboundPort;
  }
  const service = optionalString('service');
  if (service !== undefined && !isDns1123Label(service))
    throw invalid('service', `"${service}" is not a DNS-1123 label`);
  if (body.healthy !== undefined && typeof body.healthy !== 'boolean')
    throw invalid('healthy', 'must be true or false');
  return {
    ...(name === undefined ? {} : { name }),
    ...(namespace === undefined ? {} : { namespace }),
    address: body.address,
    ports,
    labels,
    ...(serviceAccount === undefined ? {} : { serviceAccount }),
    ...(locality === undefined ? {} : { locality }),
    ...(weight === undefined ? {} : { weight }),
    ...(inboundPort === undefined ? {} : { inboundPort }),
    ...(service === undefined ? {} : { service }),
    ...(typeof body.healthy === 'boolean' ? { healthy: body.healthy } : {}),
  };
}

class UniversalRoutes {
  private readonly logger: Logger;
  private readonly maxBodyBytes: number;
  private readonly heartbeatSeconds: number;

  constructor(private readonly deps: UniversalRoutesDeps) {
    this.logger = deps.logger ?? createLogger('zone-cp.registration');
    this.maxBodyBytes = deps.maxBodyBytes ?? 64 * 1024;
    this.heartbeatSeconds = deps.heartbeatIntervalSeconds ?? 10;
  }

  /** The proxy token's claims, checked against this zone. */
  private authenticate(ctx: RequestContext): TokenClaims {
    const claims = this.deps.verifyProxyToken(bearerToken(ctx.req));
    if (claims.kind !== 'proxy') {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `a ${claims.kind} token cannot register workloads; use a proxy token`,
      );
    }
    if (claims.ext?.role === 'gateway') {
      throw new MeshError(ErrorCodes.FORBIDDEN, 'a gateway proxy token cannot register workloads');
    }
    if (claims.zone !== this.deps.zone) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the proxy token was issued for zone "${claims.zone ?? '(none)'}"; this is zone "${this.deps.zone}"`,
      );
    }
    return claims;
  }

  /** The workload the token binds; body values must repeat the token's or be absent. */
  private bind(
    claims: TokenClaims,
    body: { name?: string; namespace?: string; serviceAccount?: string },
  ): Workload {
    const workload = claims.ext?.workload ?? claims.sub;
    const boundNamespace = claims.ext?.namespace;
    const boundSa = claims.ext?.serviceAccount;
    if (body.name !== undefined && body.name !== workload) {
      throw forbidden('name', `the proxy token is for workload "${workload}", not "${body.name}"`);
    }
    if (body.namespace !== undefined && boundNamespace !== undefined && body.namespace !== boundNamespace) {
      throw forbidden(
        'namespace',
        `the proxy token is for namespace "${boundNamespace}", not "${body.namespace}"`,
      );
    }
    // The service account is an identity: without a binding in the token only `default` may be claimed.
    const serviceAccount = boundSa ?? 'default';
    if (body.serviceAccount !== undefined && body.serviceAccount !== serviceAccount) {
      throw forbidden(
        'serviceAccount',
        `the proxy token is for service account "${serviceAccount}", not "${body.serviceAccount}"`,
      );
    }
    return { name: workload, namespace: boundNamespace ?? body.namespace ?? 'default', serviceAccount };
  }

  private pathWorkload(ctx: RequestContext, claims: TokenClaims): Workload {
    const { namespace = '', name = '' } = ctx.params;
    return this.bind(claims, { name, namespace });
  }

  async register(ctx: RequestContext): Promise<void> {
    const claims = this.authenticate(ctx);
    const body = parseRegistration(parseJsonBody(await readBody(ctx.req, this.maxBodyBytes)));
    const workload = this.bind(claims, body);
    const now = new Date().toISOString();
    const labels = {
      ...body.labels,
      ...(body.service === undefined ? {} : { [SERVICE_LABEL]: body.service }),
    };
    const entry: Resource = {
      apiVersion: WORKLOAD_API_VERSION,
      kind: 'WorkloadEntry',
      metadata: {
        name: workload.name,
        namespace: workload.namespace,
        labels,
        annotations: {
          [INBOUND_PORT_ANNOTATION]: String(body.inboundPort ?? DEFAULT_INBOUND_PORT),
          [HEARTBEAT_ANNOTATION]: now,
          ...(body.healthy === false ? { [HEALTHY_ANNOTATION]: 'false' } : {}),
        },
      },
      spec: {
        address: body.address,
        ports: body.ports,
        labels,
        serviceAccount: workload.serviceAccount,
        ...(body.locality === undefined ? {} : { locality: body.locality }),
        ...(body.weight === undefined ? {} : { weight: body.weight }),
      },
    };
    // The shared validator is the last word on what a WorkloadEntry may hold.
    validateResource(entry);
    const { stored, created } = await this.upsert(entry, workload);
    this.logger.info(created ? 'workload registered' : 'workload re-registered', {
      workload: `${workload.namespace}/${workload.name}`,
      address: body.address,
      tokenId: claims.jti,
    });
    sendJson(ctx.res, created ? 201 : 200, {
      name: workload.name,
      namespace: workload.namespace,
      serviceAccount: workload.serviceAccount,
      inboundPort: body.inboundPort ?? DEFAULT_INBOUND_PORT,
      heartbeatIntervalSeconds: this.heartbeatSeconds,
      resourceVersion: stored.metadata.resourceVersion,
    });
  }

  /** Creates the entry, or replaces the workload's existing one with compare-and-set. */
  private async upsert(
    entry: Resource,
    workload: Workload,
  ): Promise<{ stored: StoredResource; created: boolean }> {
    const key = { kind: 'WorkloadEntry', namespace: workload.namespace, name: workload.name };
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      const current = await this.deps.store.get(key);
      try {
        if (current === undefined) return { stored: await this.deps.store.create(entry), created: true };
        this.checkOwnership(current);
        const stored = await this.deps.store.update(entry, {
          expectedResourceVersion: current.metadata.resourceVersion,
        });
        return { stored, created: false };
      } catch (err) {
        // Another registration or heartbeat raced us: read again.
        if (isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS)) continue;
        throw err;
      }
    }
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `WorkloadEntry ${workload.namespace}/${workload.name} kept changing; retry`,
    );
  }

  /** Objects synced from global belong to global: a proxy token cannot overwrite or delete them. */
  private checkOwnership(current: StoredResource): void {
    if (current.metadata.labels?.[ORIGIN_LABEL] === 'global') {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `WorkloadEntry ${current.metadata.namespace ?? ''}/${current.metadata.name} is managed by the global control plane`,
      );
    }
  }

  async heartbeat(ctx: RequestContext): Promise<void> {
    const claims = this.authenticate(ctx);
    const workload = this.pathWorkload(ctx, claims);
    const raw = await readBody(ctx.req, this.maxBodyBytes);
    let healthy: boolean | undefined;
    if (raw.length > 0) {
      const body = parseJsonBody(raw);
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'the heartbeat body must be a JSON object');
      }
      for (const field of Object.keys(body))
        if (field !== 'healthy') throw invalid(field, 'unknown field (known: healthy)');
      const value = (body as { healthy?: unknown }).healthy;
      if (value !== undefined && typeof value !== 'boolean')
        throw invalid('healthy', 'must be true or false');
      healthy = value;
    }
    const key = { kind: 'WorkloadEntry', namespace: workload.namespace, name: workload.name };
    const now = new Date().toISOString();
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      const current = await this.deps.store.get(key);
      if (current === undefined) {
        throw new MeshError(
          ErrorCodes.NOT_FOUND,
          `workload ${workload.namespace}/${workload.name} is not registered; POST /api/v1/workloads first`,
        );
      }
      this.checkOwnership(current);
      const annotations: Record<string, string> = {
        ...(current.metadata.annotations ?? {}),
        [HEARTBEAT_ANNOTATION]: now,
      };
      if (healthy === false) annotations[HEALTHY_ANNOTATION] = 'false';
      if (healthy === true) delete annotations[HEALTHY_ANNOTATION];
      try {
        const stored = await this.deps.store.update(
          { ...current, metadata: { ...current.metadata, annotations } },
          { expectedResourceVersion: current.metadata.resourceVersion },
        );
        sendJson(ctx.res, 200, {
          name: workload.name,
          namespace: workload.namespace,
          healthy: stored.metadata.annotations?.[HEALTHY_ANNOTATION] !== 'false',
          heartbeatAt: now,
          heartbeatIntervalSeconds: this.heartbeatSeconds,
        });
        return;
      } catch (err) {
        if (isMeshError(err, ErrorCodes.CONFLICT)) continue;
        throw err;
      }
    }
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `WorkloadEntry ${workload.namespace}/${workload.name} kept changing; retry`,
    );
  }

  async deregister(ctx: RequestContext): Promise<void> {
    const claims = this.authenticate(ctx);
    const workload = this.pathWorkload(ctx, claims);
    const key = { kind: 'WorkloadEntry', namespace: workload.namespace, name: workload.name };
    const current = await this.deps.store.get(key);
    if (current === undefined) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `workload ${workload.namespace}/${workload.name} is not registered`,
      );
    }
    this.checkOwnership(current);
    await this.deps.store.delete(key, { expectedResourceVersion: current.metadata.resourceVersion });
    this.logger.info('workload deregistered', {
      workload: `${workload.namespace}/${workload.name}`,
      tokenId: claims.jti,
    });
    sendJson(ctx.res, 200, { deleted: { name: workload.name, namespace: workload.namespace } });
  }
}

/**
 * Adds the registration routes. They are `public` for the router (no API
 * token needed) because each authenticates the caller's proxy token itself.
 */
export function registerUniversalRoutes(router: Router, deps: UniversalRoutesDeps): void {
  const routes = new UniversalRoutes(deps);
  router
    .add('POST', '/api/v1/workloads', 'public', (ctx) => routes.register(ctx))
    .add('POST', '/api/v1/workloads/:namespace/:name/heartbeat', 'public', (ctx) => routes.heartbeat(ctx))
    .add('DELETE', '/api/v1/workloads/:namespace/:name', 'public', (ctx) => routes.deregister(ctx));
}
