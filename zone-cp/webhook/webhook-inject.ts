/**
 * Sidecar injection: the decision (is this pod meshed?) and the RFC 6902
 * JSON patch that adds to a Pod
 * - the `meshfed-proxy` sidecar container (outbound 15001, inbound 15006,
 *   admin 15000 with /ready, metrics 15090), running as UID 1337;
 * - the `meshfed-init` init container that installs the traffic-capture
 *   iptables rules before the app starts, as istio-init does (the proxy's
 *   UID is exempt, so its own traffic is not looped back);
 * - the `meshfed-identity` volume: a projected ServiceAccount token with
 *   audience `meshfed` (what the zone CA verifies by TokenReview) and the
 *   mesh root certificate from a ConfigMap.
 *
 * The patch is built only from the pod in the request and the options, so
 * the same pod always gets the same patch; a pod that already carries the
 * proxy container gets none (idempotent when a controller re-submits it).
 */

import { SIDECAR_ENV } from '../../core/sidecar-node-options.js';
import { PROXY_CONTAINER_NAME } from '../discovery/discovery.js';

/** Namespace label that turns injection on for a namespace. */
export const INJECTION_LABEL = 'meshfed-injection';
/** Pod annotation: `"false"` opts one pod out. */
export const INJECT_ANNOTATION = 'meshfed.io/inject';
/** Pod annotation set on injected pods. */
export const STATUS_ANNOTATION = 'meshfed.io/status';
/** Per-pod overrides of the traffic capture, as Istio's `traffic.sidecar.istio.io/*`. */
export const EXCLUDE_INBOUND_PORTS_ANNOTATION = 'traffic.meshfed.io/excludeInboundPorts';
export const EXCLUDE_OUTBOUND_PORTS_ANNOTATION = 'traffic.meshfed.io/excludeOutboundPorts';
export const EXCLUDE_OUTBOUND_CIDRS_ANNOTATION = 'traffic.meshfed.io/excludeOutboundIPRanges';

export const INIT_CONTAINER_NAME = 'meshfed-init';
export const IDENTITY_VOLUME_NAME = 'meshfed-identity';
/** Where the identity volume is mounted in the sidecar. */
export const IDENTITY_MOUNT_PATH = '/var/run/secrets/meshfed';
/** Audience of the projected token: the zone CA's TokenReview asks for it. */
export const TOKEN_AUDIENCE = 'meshfed';
export const PROXY_UID = 1337;

export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const ADMIN_PORT = 15000;
export const METRICS_PORT = 15090;

export interface InjectionOptions {
  /** Image of the sidecar: the meshfed image, whose `meshfed-proxy` is the lean sidecar entry. */
  proxyImage: string;
  /** Image of the init container; default the proxy image (it carries iptables). */
  initImage?: string;
  /** `host:port` of the zone CP's MDS + CA the sidecar dials (5678). */
  zoneCpAddress: string;
  /** The zone's name, passed to the sidecar. */
  zone?: string;
  /** ConfigMap holding the mesh root certificate (`root-cert.pem`). Default `meshfed-ca-root-cert`. */
  caConfigMap?: string;
  /** Lifetime of the projected token. Default 3600 s (the kubelet rotates it). */
  tokenExpirationSeconds?: number;
  /** Sidecar resources. Default requests 50m / 64Mi, limits 1 CPU / 256Mi. */
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** Inbound ports never captured, besides the proxy's own. */
  excludeInboundPorts?: number[];
  /** Outbound ports never captured. */
  excludeOutboundPorts?: number[];
  /** Outbound CIDRs never captured (e.g. the API server's). */
  excludeOutboundCidrs?: string[];
}

/** One RFC 6902 operation (only `add` is needed to inject). */
export interface PatchOperation {
  op: 'add';
  path: string;
  value: unknown;
}

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 6901 escaping of one path token (`meshfed.io/status` → `meshfed.io~1status`). */
export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export type InjectionDecision = { inject: true } | { inject: false; reason: string };

/**
 * Whether a pod gets a sidecar. `namespaceLabels` undefined means the
 * namespace is not known (yet): the MutatingWebhookConfiguration's
 * namespaceSelector already chose it, so it is injected.
 */
export function decideInjection(
  pod: unknown,
  namespaceLabels: Record<string, string> | undefined,
): InjectionDecision {
  if (!isObj(pod) || !isObj(pod.spec)) return { inject: false, reason: 'not a pod' };
  if (namespaceLabels !== undefined && namespaceLabels[INJECTION_LABEL] !== 'enabled') {
    return { inject: false, reason: `namespace is not labelled ${INJECTION_LABEL}=enabled` };
  }
  const annotations = isObj(pod.metadata) && isObj(pod.metadata.annotations) ? pod.metadata.annotations : {};
  if (annotations[INJECT_ANNOTATION] === 'false') {
    return { inject: false, reason: `pod is annotated ${INJECT_ANNOTATION}: "false"` };
  }
  const containers = Array.isArray(pod.spec.containers) ? pod.spec.containers : [];
  const initContainers = Array.isArray(pod.spec.initContainers) ? pod.spec.initContainers : [];
  if ([...containers, ...initContainers].some((c) => isObj(c) && c.name === PROXY_CONTAINER_NAME)) {
    return { inject: false, reason: 'pod already has the meshfed-proxy container' };
  }
  if (pod.spec.hostNetwork === true) {
    // Capturing traffic in the host's network namespace would capture the node's.
    return { inject: false, reason: 'pod uses the host network' };
  }
  return { inject: true };
}

function portList(text: unknown, fallback: number[]): string {
  const extra =
    typeof text === 'string'
      ? text
          .split(',')
          .map((p) => p.trim())
          .filter((p) => /^\d+$/.test(p))
      : [];
  return [...new Set([...fallback.map(String), ...extra])].join(',');
}

function cidrList(text: unknown, fallback: string[]): string {
  const extra =
    typeof text === 'string'
      ? text
          .split(',')
          .map((c) => c.trim())
          .filter((c) => c !== '')
      : [];
  return [...new Set([...fallback, ...extra])].join(',');
}

/** The sidecar, init container and volume for `pod` (exported for docs and tests). */
export function injectedParts(pod: Obj, options: InjectionOptions): { sidecar: Obj; init: Obj; volume: Obj } {
  const annotations = isObj(pod.metadata) && isObj(pod.metadata.annotations) ? pod.metadata.annotations : {};
  const excludeInbound = portList(annotations[EXCLUDE_INBOUND_PORTS_ANNOTATION], [
    ADMIN_PORT,
    METRICS_PORT,
    ...(options.excludeInboundPorts ?? []),
  ]);
  const excludeOutbound = portList(
    annotations[EXCLUDE_OUTBOUND_PORTS_ANNOTATION],
    options.excludeOutboundPorts ?? [],
  );
  const excludeCidrs = cidrList(
    annotations[EXCLUDE_OUTBOUND_CIDRS_ANNOTATION],
    options.excludeOutboundCidrs ?? [],
  );
  const tokenPath = `${IDENTITY_MOUNT_PATH}/token`;
  const caPath = `${IDENTITY_MOUNT_PATH}/root-cert.pem`;
  const fieldEnv = (name: string, fieldPath: string): Obj => ({
    name,
    valueFrom: { fieldRef: { fieldPath } },
  });
  const sidecar: Obj = {
    name: PROXY_CONTAINER_NAME,
    image: options.proxyImage,
    // The lean sidecar entry (cli/proxy-main.ts, bundled by
    // scripts/bundle-sidecar.ts): `meshfed proxy`'s flags and variables
    // (cli/commands/proxy-flags.ts) without the rest of the CLI, 4–6 MiB less
    // resident memory per pod at idle. test/deploy/manifests.test.ts parses this
    // command line with that entry's parser.
    command: ['meshfed-proxy'],
    args: ['--mds-address', options.zoneCpAddress],
    env: [
      ...(options.zone === undefined ? [] : [{ name: 'MESHFED_ZONE', value: options.zone }]),
      // The projected ServiceAccount token bootstraps the first certificate (TokenReview at the zone CA).
      { name: 'MESHFED_MDS_TOKEN_FILE', value: tokenPath },
      { name: 'MESHFED_MDS_CA_FILE', value: caPath },
      { name: 'MESHFED_PROXY_INBOUND_PORT', value: String(INBOUND_PORT) },
      { name: 'MESHFED_PROXY_OUTBOUND_PORT', value: String(OUTBOUND_PORT) },
      { name: 'MESHFED_PROXY_ADMIN_PORT', value: String(ADMIN_PORT) },
      { name: 'MESHFED_PROXY_METRICS_PORT', value: String(METRICS_PORT) },
      ...Object.entries(SIDECAR_ENV).map(([name, value]) => ({ name, value })),
      fieldEnv('MESHFED_PROXY_WORKLOAD', 'metadata.name'),
      fieldEnv('MESHFED_PROXY_NAMESPACE', 'metadata.namespace'),
      fieldEnv('POD_IP', 'status.podIP'),
      fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      fieldEnv('NODE_NAME', 'spec.nodeName'),
    ],
    ports: [
      { name: 'mesh-outbound', containerPort: OUTBOUND_PORT, protocol: 'TCP' },
      { name: 'mesh-inbound', containerPort: INBOUND_PORT, protocol: 'TCP' },
      { name: 'mesh-admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
      { name: 'mesh-metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
    ],
    readinessProbe: {
      httpGet: { path: '/ready', port: ADMIN_PORT },
      initialDelaySeconds: 1,
      periodSeconds: 2,
      timeoutSeconds: 3,
      failureThreshold: 30,
    },
    resources: {
      requests: options.resources?.requests ?? { cpu: '50m', memory: '64Mi' },
      limits: options.resources?.limits ?? { cpu: '1', memory: '256Mi' },
    },
    securityContext: {
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    volumeMounts: [{ name: IDENTITY_VOLUME_NAME, mountPath: IDENTITY_MOUNT_PATH, readOnly: true }],
  };
  const captureEnv: Array<[string, string]> = [
    ['MESHFED_PROXY_UID', String(PROXY_UID)],
    ['MESHFED_OUTBOUND_PORT', String(OUTBOUND_PORT)],
    ['MESHFED_INBOUND_PORT', String(INBOUND_PORT)],
    ['MESHFED_INBOUND_CAPTURE_PORTS', '*'],
    ['MESHFED_EXCLUDE_INBOUND_PORTS', excludeInbound],
    ['MESHFED_EXCLUDE_OUTBOUND_PORTS', excludeOutbound],
    ['MESHFED_EXCLUDE_OUTBOUND_CIDRS', excludeCidrs],
  ];
  const init: Obj = {
    name: INIT_CONTAINER_NAME,
    image: options.initImage ?? options.proxyImage,
    args: [
      'capture',
      '--proxy-uid',
      String(PROXY_UID),
      '--outbound-port',
      String(OUTBOUND_PORT),
      '--inbound-port',
      String(INBOUND_PORT),
      '--exclude-inbound-ports',
      excludeInbound,
      '--exclude-outbound-ports',
      excludeOutbound,
      '--exclude-outbound-cidrs',
      excludeCidrs,
    ],
    env: captureEnv.map(([name, value]) => ({ name, value })),
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
    // iptables needs NET_ADMIN/NET_RAW and root in the pod's network namespace, nothing more.
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
  };
  const volume: Obj = {
    name: IDENTITY_VOLUME_NAME,
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: TOKEN_AUDIENCE,
            expirationSeconds: options.tokenExpirationSeconds ?? 3600,
            path: 'token',
          },
        },
        {
          configMap: {
            name: options.caConfigMap ?? 'meshfed-ca-root-cert',
            items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }],
            optional: true,
          },
        },
      ],
    },
  };
  return { sidecar, init, volume };
}

/** Adds `value` to the array at `path`, creating the array when the pod has none. */
function appendTo(pod: Obj, field: 'containers' | 'initContainers' | 'volumes', value: Obj): PatchOperation {
  const spec = pod.spec as Obj;
  return Array.isArray(spec[field])
    ? { op: 'add', path: `/spec/${field}/-`, value }
    : { op: 'add', path: `/spec/${field}`, value: [value] };
}

/** The JSON patch that injects the sidecar into `pod` (call `decideInjection` first). */
export function buildInjectionPatch(pod: Obj, options: InjectionOptions): PatchOperation[] {
  const { sidecar, init, volume } = injectedParts(pod, options);
  const ops: PatchOperation[] = [];
  // The init container must run first of all: traffic capture precedes any other init container.
  const spec = pod.spec as Obj;
  ops.push(
    Array.isArray(spec.initContainers)
      ? { op: 'add', path: '/spec/initContainers/0', value: init }
      : { op: 'add', path: '/spec/initContainers', value: [init] },
  );
  ops.push(appendTo(pod, 'containers', sidecar));
  ops.push(appendTo(pod, 'volumes', volume));
  const containers = Array.isArray(spec.containers) ? spec.containers : [];
  const firstApp = containers.find((c) => isObj(c) && typeof c.name === 'string');
  const added: Record<string, string> = { [STATUS_ANNOTATION]: 'injected' };
  // kubectl logs/exec pick the app, not the sidecar.
  if (isObj(firstApp)) added['kubectl.kubernetes.io/default-container'] = String(firstApp.name);
  const meta = isObj(pod.metadata) ? pod.metadata : undefined;
  const existing = meta && isObj(meta.annotations) ? meta.annotations : undefined;
  if (!meta) {
    ops.push({ op: 'add', path: '/metadata', value: { annotations: added } });
  } else if (!existing) {
    ops.push({ op: 'add', path: '/metadata/annotations', value: added });
  } else {
    for (const [k, v] of Object.entries(added)) {
      if (existing[k] === undefined)
        ops.push({ op: 'add', path: `/metadata/annotations/${escapePointer(k)}`, value: v });
    }
  }
  return ops;
}
