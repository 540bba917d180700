/**
 * Every manifest under deploy/ checked as far as it can be without a
 * cluster: each document against the Kubernetes OpenAPI schemas of its
 * apiVersion/kind (unknown kinds and unknown fields fail), then the
 * references between them (selectors, ports, ServiceAccounts, Secrets,
 * ConfigMaps, RBAC, the webhook's Service), the command lines against the
 * real `meshfed` CLI (every flag exists and parses, listening ports match
 * the container ports), images, security settings, the kind configs, and
 * the internal CRDs against the code that defines them.
 */

import { beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import type { Command } from 'commander';

import { globalCpOptionsFrom } from '../../cli/commands/global-cp.js';
import { zoneCpOptionsFrom } from '../../cli/commands/zone-cp.js';
import { buildProgram } from '../../cli/program.js';
import { PROXY_FLAGS } from '../../cli/commands/proxy-flags.js';
import { parseFlags } from '../../cli/flag-table.js';
import { DEFAULT_KDS_PORT } from '../../core/kds/kds-protocol.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_GATEWAY_PORT } from '../../eastwest-gateway/gateway-options.js';
import { DEFAULT_GLOBAL_PORT } from '../../global-cp/global-cp.js';
import {
  INJECTION_LABEL,
  INJECT_ANNOTATION,
  TOKEN_AUDIENCE,
  injectedParts,
} from '../../zone-cp/webhook/webhook-inject.js';
import { DEFAULT_ZONE_GRPC_PORT, DEFAULT_ZONE_REST_PORT } from '../../zone-cp/zone-cp.js';
import {
  REPO_ROOT,
  isObj,
  keyOf,
  loadDeployManifests,
  loadYamlFile,
  type Json,
  type ManifestDoc,
} from './deploy-helpers.js';
import { validateResource } from '../../core/resource/validate.js';
import { validateKubernetesObject } from './k8s-schema.js';

const PACKAGE_VERSION = String(
  (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as Json).version,
);
const MESHFED_IMAGE = `meshfed:${PACKAGE_VERSION}`;
/** Images from elsewhere, allowed by name: the demo's Redis. */
const THIRD_PARTY_IMAGES = new Set(['redis:7.4-alpine']);
const SYSTEM_NS = 'meshfed-system';

/**
 * Folders of deploy/ owned by other tests (compose.test.ts, systemd.test.ts),
 * and samples/: meshfed policies, validated below by the API's own validator.
 */
const NOT_KUBERNETES = new Set(['compose', 'systemd', 'kind', 'scripts', 'samples']);
/** Folders applied to one cluster together: cluster a gets global and zone, both get crds. */
const CLUSTER_A = ['crds', 'global', 'zone'];

/**
 * Objects deploy/ uses but does not define, each made by deploy/kind/up.sh
 * (checked against its text below) or by a cert-bootstrap Job (checked
 * against the Job's env), with the keys they hold.
 */
interface External {
  kind: 'Secret' | 'ConfigMap';
  namespace: string;
  name: string;
  keys: string[];
  by: 'up.sh' | 'job';
  /** What a key holds in the kind setup, for the command-line check. */
  sample?: Record<string, string>;
}
const EXTERNAL: External[] = [
  {
    kind: 'ConfigMap',
    namespace: SYSTEM_NS,
    name: 'meshfed-zone',
    keys: ['zone', 'global-kds-address', 'gateway-address'],
    by: 'up.sh',
    sample: {
      zone: 'zone-b',
      'global-kds-address': '172.18.0.2:30685',
      'gateway-address': '172.18.0.3:30443',
    },
  },
  {
    kind: 'Secret',
    namespace: SYSTEM_NS,
    name: 'meshfed-zone-credentials',
    keys: ['zone-token', 'global-ca.crt'],
    by: 'up.sh',
  },
  { kind: 'Secret', namespace: SYSTEM_NS, name: 'meshfed-gateway-token', keys: ['token'], by: 'up.sh' },
  {
    kind: 'ConfigMap',
    namespace: 'demo',
    name: 'meshfed-ca-root-cert',
    keys: ['root-cert.pem'],
    by: 'up.sh',
  },
  {
    kind: 'Secret',
    namespace: SYSTEM_NS,
    name: 'meshfed-global-tls',
    keys: ['tls.crt', 'tls.key', 'ca.crt'],
    by: 'job',
  },
  {
    kind: 'Secret',
    namespace: SYSTEM_NS,
    name: 'meshfed-zone-tls',
    keys: ['tls.crt', 'tls.key', 'ca.crt'],
    by: 'job',
  },
];

/** Ports each meshfed command listens on: the flag that sets it and its default. */
const LISTENERS: Record<string, Array<{ flag: string; fallback: number }>> = {
  'global-cp': [
    { flag: 'port', fallback: DEFAULT_GLOBAL_PORT },
    { flag: 'kdsPort', fallback: DEFAULT_KDS_PORT },
  ],
  'zone-cp': [
    { flag: 'port', fallback: DEFAULT_ZONE_REST_PORT },
    { flag: 'grpcPort', fallback: DEFAULT_ZONE_GRPC_PORT },
    // The injection webhook (served when --webhook-cert is given).
    { flag: 'webhookPort', fallback: 15017 },
  ],
  gateway: [
    { flag: 'port', fallback: DEFAULT_GATEWAY_PORT },
    { flag: 'adminPort', fallback: DEFAULT_ADMIN_PORT },
  ],
};

/**
 * Listeners a component must serve in the cluster that its CLI cannot start
 * yet. The container declares the port so that the Service and the webhook
 * configuration are ready; each entry fails this suite as soon as the
 * command grows an option matching `optionPattern`, so that the manifest
 * passes it and the entry is removed.
 */
const PENDING_LISTENERS: Record<string, Array<{ optionPattern: RegExp; port: number; why: string }>> = {};

// ---------------------------------------------------------------- helpers

function meta(obj: Json): Json {
  return isObj(obj.metadata) ? obj.metadata : {};
}

function nameOf(obj: Json): string {
  return String(meta(obj).name);
}

function namespaceOf(obj: Json): string {
  const ns = meta(obj).namespace;
  return typeof ns === 'string' ? ns : '';
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.filter(isObj) : [];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

interface PodTemplate {
  doc: ManifestDoc;
  labels: Record<string, string>;
  spec: Json;
  namespace: string;
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);

function podTemplates(docs: ManifestDoc[]): PodTemplate[] {
  const out: PodTemplate[] = [];
  for (const doc of docs) {
    if (!WORKLOAD_KINDS.has(String(doc.obj.kind))) continue;
    const spec = isObj(doc.obj.spec) ? doc.obj.spec : {};
    const template = isObj(spec.template) ? spec.template : {};
    const labels =
      isObj(template.metadata) && isObj(template.metadata.labels) ? template.metadata.labels : {};
    out.push({
      doc,
      labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)])),
      spec: isObj(template.spec) ? template.spec : {},
      namespace: namespaceOf(doc.obj),
    });
  }
  return out;
}

function containersOf(spec: Json): Json[] {
  return [...list(spec.initContainers), ...list(spec.containers)];
}

function matches(selector: Record<string, unknown>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === String(v));
}

function where(doc: ManifestDoc): string {
  return `${doc.file}#${doc.index} ${keyOf(doc.obj)}`;
}

/** Objects of up.sh: `create configmap|secret generic NAME` with its --from-literal/--from-file keys. */
function upShObjects(): Array<{ kind: string; namespace: string; name: string; keys: string[] }> {
  const text = readFileSync(path.join(REPO_ROOT, 'deploy/kind/up.sh'), 'utf8');
  const lines = text.split('\n');
  const found: Array<{ kind: string; namespace: string; name: string; keys: string[] }> = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const m = /create (configmap|secret generic) (\S+)/.exec(line);
    if (!m) continue;
    const namespace = /-n "\$DEMO_NS"/.test(line) ? 'demo' : /-n "\$NS"/.test(line) ? SYSTEM_NS : '?';
    let statement = line;
    while (/\\\s*$/.test(lines[i] ?? '') && i + 1 < lines.length) statement += '\n' + (lines[++i] ?? '');
    const keys = [...statement.matchAll(/--from-(?:literal|file)=([A-Za-z0-9._-]+)=/g)].map(
      (k) => k[1] ?? '',
    );
    found.push({ kind: m[1] === 'configmap' ? 'ConfigMap' : 'Secret', namespace, name: m[2] ?? '', keys });
  }
  return found;
}

// ---------------------------------------------------------------- the CLI

interface ParsedCommand {
  command: string;
  /** Option values as the CLI parsed them (commander's attribute names). */
  opts: Record<string, unknown>;
}

/** The `meshfed` subcommand named `name`, from the real program builder. */
function cliCommand(program: Command, name: string): Command | undefined {
  return program.commands.find((c) => c.name() === name);
}

/** Every long flag a subcommand accepts, its own and the root program's. */
function longFlags(program: Command, command: Command): Set<string> {
  return new Set(
    [...command.options, ...program.options].map((o) => o.long).filter((l): l is string => l !== undefined),
  );
}

/**
 * Parses a container's args with the real CLI, its actions replaced so
 * nothing starts: unknown flags, bad values (every argParser runs), missing
 * mandatory options and bad choices fail as they would in the pod.
 * MESHFED_* variables of the container's env are visible to the parse.
 */
async function parseWithCli(args: string[], env: Record<string, string>): Promise<ParsedCommand> {
  const program = buildProgram();
  const name = args[0] ?? '';
  const command = cliCommand(program, name);
  if (!command) throw new Error(`"${name}" is not a meshfed command`);
  let opts: Record<string, unknown> | undefined;
  command.action((parsed: Record<string, unknown>) => {
    opts = parsed;
  });
  const saved = { ...process.env };
  for (const key of Object.keys(process.env)) if (key.startsWith('MESHFED_')) delete process.env[key];
  Object.assign(process.env, env);
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
  if (!opts) throw new Error(`meshfed ${name} did not reach its action`);
  return { command: name, opts };
}

// ---------------------------------------------------------------- the suite

let all: ManifestDoc[] = [];
let kube: ManifestDoc[] = [];

beforeAll(() => {
  all = loadDeployManifests();
  kube = all.filter((d) => !NOT_KUBERNETES.has(d.dir));
});

describe('deploy/samples', () => {
  it('holds policies the meshfed API accepts without a warning', () => {
    const samples = all.filter((d) => d.dir === 'samples');
    expect(samples.length).toBeGreaterThan(0);
    for (const doc of samples) {
      const { warnings } = validateResource(doc.obj);
      expect(`${where(doc)}: ${warnings.join('; ')}`).toBe(`${where(doc)}: `);
    }
  });
});

describe('deploy/ manifests against the Kubernetes schemas', () => {
  it('finds the manifests of every part', () => {
    const files = new Set(kube.map((d) => d.file));
    for (const file of [
      'deploy/global/namespace.yaml',
      'deploy/global/rbac.yaml',
      'deploy/global/redis.yaml',
      'deploy/global/global-cp.yaml',
      'deploy/global/cert-bootstrap.yaml',
      'deploy/zone/rbac.yaml',
      'deploy/zone/zone-cp.yaml',
      'deploy/zone/webhook.yaml',
      'deploy/zone/gateway.yaml',
      'deploy/zone/cert-bootstrap.yaml',
    ]) {
      expect(files).toContain(file);
    }
    expect(kube.filter((d) => d.dir === 'crds').length).toBeGreaterThanOrEqual(9);
  });

  it('validates every document against the schema of its apiVersion/kind, with no unknown field', () => {
    const problems: string[] = [];
    for (const doc of kube) {
      for (const p of validateKubernetesObject(doc.obj)) problems.push(`${where(doc)}: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  it('rejects what a cluster would reject (the validator can fail)', () => {
    const deployment = kube.find((d) => d.obj.kind === 'Deployment');
    if (!deployment) throw new Error('no Deployment under deploy/');
    const bad = structuredClone(deployment.obj);
    (bad.spec as Json).replicas = 'two';
    expect(validateKubernetesObject(bad).join('\n')).toMatch(/replicas must be integer/);
    const typo = structuredClone(deployment.obj);
    ((typo.spec as Json).template as Json).spec = {
      ...(((typo.spec as Json).template as Json).spec as Json),
      serviceAcountName: 'x',
    };
    expect(validateKubernetesObject(typo).join('\n')).toMatch(
      /spec\.template\.spec\.serviceAcountName: unknown field/,
    );
    expect(validateKubernetesObject({ apiVersion: 'v1', kind: 'Gizmo', metadata: { name: 'g' } })).toEqual([
      'v1 Gizmo is not a Kubernetes kind the schemas know',
    ]);
    expect(validateKubernetesObject({ apiVersion: 'extensions/v1beta1', kind: 'Deployment' })[0]).toMatch(
      /not one a current Kubernetes serves/,
    );
  });

  it('names each object once per cluster, and identically where two folders share one', () => {
    const seen = new Map<string, ManifestDoc>();
    const problems: string[] = [];
    for (const doc of kube.filter((d) => CLUSTER_A.includes(d.dir))) {
      const key = keyOf(doc.obj);
      const before = seen.get(key);
      if (!before) {
        seen.set(key, doc);
        continue;
      }
      if (before.dir === doc.dir) problems.push(`${key} defined twice in deploy/${doc.dir}`);
      else if (JSON.stringify(before.obj) !== JSON.stringify(doc.obj))
        problems.push(`${key} differs between ${before.file} and ${doc.file}; applying both would flip it`);
    }
    expect(problems).toEqual([]);
  });

  it('puts every namespaced object in a namespace its folder creates', () => {
    for (const dir of ['global', 'zone']) {
      const docs = kube.filter((d) => d.dir === dir);
      const namespaces = new Set(docs.filter((d) => d.obj.kind === 'Namespace').map((d) => nameOf(d.obj)));
      expect(namespaces).toEqual(new Set([SYSTEM_NS]));
      const cluster = new Set([
        'Namespace',
        'ClusterRole',
        'ClusterRoleBinding',
        'MutatingWebhookConfiguration',
        'CustomResourceDefinition',
      ]);
      for (const doc of docs) {
        if (cluster.has(String(doc.obj.kind)))
          expect(`${where(doc)} ${namespaceOf(doc.obj)}`).toBe(`${where(doc)} `);
        else expect(`${where(doc)} ${namespaceOf(doc.obj)}`).toBe(`${where(doc)} ${SYSTEM_NS}`);
      }
    }
  });
});

describe('references between the manifests', () => {
  it('selects pods with every Service, workload and PodDisruptionBudget, on ports they expose', () => {
    const problems: string[] = [];
    for (const dir of ['global', 'zone']) {
      const docs = kube.filter((d) => d.dir === dir);
      const templates = podTemplates(docs);
      for (const doc of docs) {
        const spec = isObj(doc.obj.spec) ? doc.obj.spec : {};
        if (WORKLOAD_KINDS.has(String(doc.obj.kind)) && doc.obj.kind !== 'Job') {
          const selector =
            isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
          const own = templates.find((t) => t.doc === doc);
          if (Object.keys(selector).length === 0 || !own || !matches(selector, own.labels))
            problems.push(`${where(doc)}: selector does not match its own pod template`);
        }
        if (doc.obj.kind === 'PodDisruptionBudget') {
          const selector =
            isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
          if (!templates.some((t) => t.namespace === namespaceOf(doc.obj) && matches(selector, t.labels)))
            problems.push(`${where(doc)}: selects no pod template`);
        }
        if (doc.obj.kind !== 'Service') continue;
        const selector = isObj(spec.selector) ? spec.selector : {};
        const selected = templates.filter(
          (t) =>
            t.namespace === namespaceOf(doc.obj) &&
            Object.keys(selector).length > 0 &&
            matches(selector, t.labels),
        );
        if (selected.length === 0) {
          problems.push(
            `${where(doc)}: selector ${JSON.stringify(selector)} matches no pod template in deploy/${dir}`,
          );
          continue;
        }
        for (const port of list(spec.ports)) {
          const target = port.targetPort ?? port.port;
          for (const t of selected) {
            const ports = containersOf(t.spec).flatMap((c) => list(c.ports));
            if (!ports.some((p) => p.name === target || p.containerPort === target))
              problems.push(
                `${where(doc)}: targetPort ${String(target)} is no container port of ${where(t.doc)}`,
              );
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('refers only to ServiceAccounts, Secrets, ConfigMaps, volumes and ports that exist (or up.sh/Jobs make)', () => {
    const problems: string[] = [];
    const created = upShObjects();
    for (const dir of ['global', 'zone']) {
      const docs = kube.filter((d) => d.dir === dir);
      const defined = (kind: string, ns: string, name: string): Json | undefined =>
        docs.find((d) => d.obj.kind === kind && namespaceOf(d.obj) === ns && nameOf(d.obj) === name)?.obj;
      const external = (kind: string, ns: string, name: string): External | undefined =>
        EXTERNAL.find((e) => e.kind === kind && e.namespace === ns && e.name === name);
      const needKey = (
        kind: 'Secret' | 'ConfigMap',
        ns: string,
        name: string,
        key: string | undefined,
        at: string,
      ): void => {
        const own = defined(kind, ns, name);
        if (own) {
          const data = {
            ...(isObj(own.data) ? own.data : {}),
            ...(isObj(own.stringData) ? own.stringData : {}),
          };
          if (key !== undefined && !(key in data)) problems.push(`${at}: ${kind} ${name} has no key ${key}`);
          return;
        }
        const ext = external(kind, ns, name);
        if (!ext)
          problems.push(
            `${at}: ${kind} ${ns}/${name} is neither in deploy/${dir} nor made by up.sh or a Job`,
          );
        else if (key !== undefined && !ext.keys.includes(key))
          problems.push(`${at}: ${kind} ${name} has no key ${key}`);
      };
      for (const t of podTemplates(docs)) {
        const at = where(t.doc);
        const sa = typeof t.spec.serviceAccountName === 'string' ? t.spec.serviceAccountName : 'default';
        // Kubernetes makes "default" in every namespace.
        if (sa !== 'default' && !defined('ServiceAccount', t.namespace, sa))
          problems.push(`${at}: ServiceAccount ${sa} is not defined`);
        const volumes = new Map(list(t.spec.volumes).map((v) => [String(v.name), v]));
        const claims = isObj(t.doc.obj.spec) ? list(t.doc.obj.spec.volumeClaimTemplates) : [];
        for (const claim of claims) volumes.set(nameOf(claim), {});
        for (const volume of volumes.values()) {
          if (isObj(volume.secret)) {
            const items = list(volume.secret.items);
            if (items.length === 0)
              needKey('Secret', t.namespace, String(volume.secret.secretName), undefined, at);
            for (const item of items)
              needKey('Secret', t.namespace, String(volume.secret.secretName), String(item.key), at);
          }
          if (isObj(volume.configMap))
            needKey('ConfigMap', t.namespace, String(volume.configMap.name), undefined, at);
        }
        for (const c of containersOf(t.spec)) {
          const cAt = `${at} container ${String(c.name)}`;
          for (const mount of list(c.volumeMounts)) {
            if (!volumes.has(String(mount.name)))
              problems.push(`${cAt}: volumeMount ${String(mount.name)} has no volume`);
          }
          for (const e of list(c.env)) {
            const from = isObj(e.valueFrom) ? e.valueFrom : {};
            if (isObj(from.secretKeyRef))
              needKey(
                'Secret',
                t.namespace,
                String(from.secretKeyRef.name),
                String(from.secretKeyRef.key),
                cAt,
              );
            if (isObj(from.configMapKeyRef))
              needKey(
                'ConfigMap',
                t.namespace,
                String(from.configMapKeyRef.name),
                String(from.configMapKeyRef.key),
                cAt,
              );
          }
          const portNames = new Set(list(c.ports).map((p) => String(p.name)));
          const portNumbers = new Set(list(c.ports).map((p) => Number(p.containerPort)));
          for (const probeName of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
            const probe = c[probeName];
            if (!isObj(probe)) continue;
            const handler = isObj(probe.httpGet)
              ? probe.httpGet
              : isObj(probe.tcpSocket)
                ? probe.tcpSocket
                : undefined;
            if (!handler) continue;
            const port = handler.port;
            if (!(typeof port === 'string' ? portNames.has(port) : portNumbers.has(Number(port))))
              problems.push(`${cAt}: ${probeName} port ${String(port)} is not a container port`);
          }
        }
      }
      for (const doc of docs) {
        if (doc.obj.kind === 'RoleBinding' || doc.obj.kind === 'ClusterRoleBinding') {
          const ref = isObj(doc.obj.roleRef) ? doc.obj.roleRef : {};
          const roleNs = ref.kind === 'Role' ? namespaceOf(doc.obj) : '';
          if (!defined(String(ref.kind), roleNs, String(ref.name)))
            problems.push(`${where(doc)}: roleRef ${String(ref.kind)} ${String(ref.name)} is not defined`);
          for (const s of list(doc.obj.subjects)) {
            if (
              s.kind === 'ServiceAccount' &&
              !defined('ServiceAccount', String(s.namespace), String(s.name))
            )
              problems.push(
                `${where(doc)}: subject ServiceAccount ${String(s.namespace)}/${String(s.name)} is not defined`,
              );
          }
        }
      }
    }
    // The list of what up.sh makes is what up.sh makes, key for key.
    for (const ext of EXTERNAL.filter((e) => e.by === 'up.sh')) {
      const made = created.find((c) => c.kind === ext.kind && c.name === ext.name);
      expect(made).toEqual({ kind: ext.kind, namespace: ext.namespace, name: ext.name, keys: ext.keys });
    }
    // And what the Jobs make is what their env says.
    for (const ext of EXTERNAL.filter((e) => e.by === 'job')) {
      const job = kube.find(
        (d) =>
          d.obj.kind === 'Job' &&
          JSON.stringify(d.obj).includes(`"name":"SECRET_NAME","value":"${ext.name}"`) &&
          namespaceOf(d.obj) === ext.namespace,
      );
      if (!job) problems.push(`no Job makes Secret ${ext.name}`);
    }
    expect(problems).toEqual([]);
  });

  it('grants RBAC only to ServiceAccounts that pods run as, with no wildcard verb, naming the Secrets it may change', () => {
    for (const dir of ['global', 'zone']) {
      const docs = kube.filter((d) => d.dir === dir);
      const used = new Set(
        podTemplates(docs).map((t) => `${t.namespace}/${String(t.spec.serviceAccountName)}`),
      );
      for (const binding of docs.filter(
        (d) => d.obj.kind === 'RoleBinding' || d.obj.kind === 'ClusterRoleBinding',
      )) {
        for (const s of list(binding.obj.subjects))
          expect(
            `${where(binding)} → ${String(s.namespace)}/${String(s.name)} used=${used.has(`${String(s.namespace)}/${String(s.name)}`)}`,
          ).toBe(`${where(binding)} → ${String(s.namespace)}/${String(s.name)} used=true`);
      }
    }
    const roles = kube.filter((d) => d.obj.kind === 'Role' || d.obj.kind === 'ClusterRole');
    for (const role of roles) {
      for (const rule of list(role.obj.rules)) {
        const verbs = strings(rule.verbs);
        expect(verbs).not.toContain('*');
        // A get/update/patch on Secrets or webhook configurations names its objects.
        const sensitive = strings(rule.resources).some(
          (r) => r === 'secrets' || r === 'mutatingwebhookconfigurations',
        );
        if (sensitive && verbs.some((v) => v !== 'create')) {
          expect(`${where(role)} ${strings(rule.resourceNames).length > 0}`).toBe(`${where(role)} true`);
        }
      }
    }
  });

  it('lets the zone CP read workloads, own every meshfed CRD group and review tokens', () => {
    const role = kube.find((d) => d.obj.kind === 'ClusterRole' && nameOf(d.obj) === 'meshfed-zone-cp');
    if (!role) throw new Error('no ClusterRole meshfed-zone-cp');
    const rules = list(role.obj.rules);
    const allows = (group: string, resource: string, verb: string): boolean =>
      rules.some(
        (r) =>
          strings(r.apiGroups).includes(group) &&
          (strings(r.resources).includes(resource) || strings(r.resources).includes('*')) &&
          strings(r.verbs).includes(verb),
      );
    for (const [group, resource] of [
      ['', 'services'],
      ['', 'pods'],
      ['', 'namespaces'],
      ['', 'nodes'],
      ['discovery.k8s.io', 'endpointslices'],
    ] as const) {
      for (const verb of ['get', 'list', 'watch'])
        expect(`${group}/${resource} ${verb} ${allows(group, resource, verb)}`).toBe(
          `${group}/${resource} ${verb} true`,
        );
    }
    expect(allows('authentication.k8s.io', 'tokenreviews', 'create')).toBe(true);
    const crds = kube.filter((d) => d.obj.kind === 'CustomResourceDefinition');
    const groups = new Set(crds.map((d) => String((d.obj.spec as Json).group)));
    expect(groups).toEqual(
      new Set(['networking.meshfed.io', 'security.meshfed.io', 'meshfed.io', 'internal.meshfed.io']),
    );
    for (const crd of crds) {
      const spec = crd.obj.spec as Json;
      const plural = String((spec.names as Json).plural);
      for (const verb of ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'])
        expect(`${plural}.${String(spec.group)} ${verb} ${allows(String(spec.group), plural, verb)}`).toBe(
          `${plural}.${String(spec.group)} ${verb} true`,
        );
    }
  });

  it("sends pod creations in labelled namespaces to the zone CP's webhook, and its certificate names it", () => {
    const hook = kube.find((d) => d.obj.kind === 'MutatingWebhookConfiguration');
    if (!hook) throw new Error('no MutatingWebhookConfiguration');
    const webhooks = list(hook.obj.webhooks);
    expect(webhooks).toHaveLength(1);
    const w = webhooks[0] as Json;
    expect(w.sideEffects).toBe('None');
    expect(w.admissionReviewVersions).toEqual(['v1']);
    expect(['Ignore', 'Fail']).toContain(w.failurePolicy);
    expect(Number(w.timeoutSeconds)).toBeGreaterThan(0);
    expect(Number(w.timeoutSeconds)).toBeLessThanOrEqual(30);
    expect(w.namespaceSelector).toEqual({ matchLabels: { [INJECTION_LABEL]: 'enabled' } });
    expect(w.objectSelector).toEqual({
      matchExpressions: [{ key: INJECT_ANNOTATION, operator: 'NotIn', values: ['false'] }],
    });
    expect(list(w.rules)).toEqual([
      {
        operations: ['CREATE'],
        apiGroups: [''],
        apiVersions: ['v1'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ]);
    const service = (w.clientConfig as Json).service as Json;
    expect(service.path).toBe('/inject');
    const svc = kube.find(
      (d) =>
        d.obj.kind === 'Service' &&
        nameOf(d.obj) === service.name &&
        namespaceOf(d.obj) === service.namespace,
    );
    if (!svc) throw new Error(`webhook Service ${String(service.name)} is not defined`);
    expect(list((svc.obj.spec as Json).ports).map((p) => p.port)).toContain(service.port ?? 443);
    const job = kube.find(
      (d) => d.obj.kind === 'Job' && JSON.stringify(d.obj).includes('WEBHOOK_CONFIGURATION'),
    );
    const env = list(
      ((((job?.obj.spec as Json).template as Json).spec as Json).containers as Json[])[0]?.env,
    );
    const value = (name: string): string => String(env.find((e) => e.name === name)?.value);
    expect(value('WEBHOOK_CONFIGURATION')).toBe(nameOf(hook.obj));
    expect(value('DNS_NAMES').split(',')).toContain(
      `${String(service.name)}.${String(service.namespace)}.svc`,
    );
    expect(value('SECRET_NAME')).toBe('meshfed-zone-tls');
  });
});

describe('containers', () => {
  const containers = (): Array<{ doc: ManifestDoc; t: PodTemplate; c: Json }> =>
    podTemplates(kube).flatMap((t) => containersOf(t.spec).map((c) => ({ doc: t.doc, t, c })));

  it(`run the one meshfed image (${MESHFED_IMAGE}, as kind loads it) or a named third-party image`, () => {
    const problems: string[] = [];
    for (const { doc, c } of containers()) {
      const image = String(c.image);
      if (image !== MESHFED_IMAGE && !THIRD_PARTY_IMAGES.has(image))
        problems.push(`${where(doc)} ${String(c.name)}: image ${image}`);
      if (c.imagePullPolicy !== 'IfNotPresent')
        problems.push(`${where(doc)} ${String(c.name)}: imagePullPolicy must be IfNotPresent (kind load)`);
      for (const arg of strings(c.args)) {
        const m = /^--[a-z-]*image=(.*)$/.exec(arg);
        if (m && m[1] !== MESHFED_IMAGE) problems.push(`${where(doc)}: ${arg} is not ${MESHFED_IMAGE}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('are locked down: non-root, read-only root, no privilege escalation, no capabilities, limits', () => {
    const problems: string[] = [];
    for (const { doc, t, c } of containers()) {
      const at = `${where(doc)} ${String(c.name)}`;
      const pod = isObj(t.spec.securityContext) ? t.spec.securityContext : {};
      const sc = isObj(c.securityContext) ? c.securityContext : {};
      if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${at}: runAsNonRoot`);
      const uid = Number(sc.runAsUser ?? pod.runAsUser);
      if (!(uid > 0)) problems.push(`${at}: a numeric non-zero runAsUser`);
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation false`);
      if (JSON.stringify((sc.capabilities as Json | undefined)?.drop) !== '["ALL"]')
        problems.push(`${at}: drop ALL`);
      if ((sc.capabilities as Json | undefined)?.add !== undefined) problems.push(`${at}: adds capabilities`);
      const seccomp = (sc.seccompProfile ?? pod.seccompProfile) as Json | undefined;
      if (seccomp?.type !== 'RuntimeDefault') problems.push(`${at}: seccompProfile RuntimeDefault`);
      const resources = isObj(c.resources) ? c.resources : {};
      for (const part of ['requests', 'limits'])
        for (const r of ['cpu', 'memory'])
          if (!isObj(resources[part]) || (resources[part] as Json)[r] === undefined)
            problems.push(`${at}: resources.${part}.${r}`);
    }
    expect(problems).toEqual([]);
  });

  it('use only flags the meshfed CLI has, with values it accepts, and expose exactly the ports they listen on', async () => {
    const program = buildProgram();
    const problems: string[] = [];
    let checked = 0;
    for (const { doc, c } of containers()) {
      if (c.image !== MESHFED_IMAGE || c.command !== undefined) continue;
      const at = `${where(doc)} ${String(c.name)}`;
      const args = strings(c.args);
      const command = cliCommand(program, args[0] ?? '');
      if (!command) {
        problems.push(`${at}: "${args[0] ?? ''}" is not a meshfed command`);
        continue;
      }
      // Every --flag the pod passes is one the command accepts.
      const known = longFlags(program, command);
      for (const arg of args.slice(1)) {
        if (!arg.startsWith('--')) continue;
        const flag = arg.split('=')[0] ?? '';
        if (!known.has(flag))
          problems.push(
            `${at}: ${flag} is not a flag of meshfed ${args[0] ?? ''} (it has ${[...known].join(' ')})`,
          );
        const option = command.options.find((o) => o.long === flag);
        if (option && (option.required || option.optional) && !arg.includes('='))
          problems.push(`${at}: write ${flag}=value (one list item per flag)`);
      }
      // The pod's environment, as the kubelet builds it (configMapKeyRef values from up.sh's sample).
      const env: Record<string, string> = {};
      for (const e of list(c.env)) {
        const from = isObj(e.valueFrom) ? e.valueFrom : {};
        if (typeof e.value === 'string') env[String(e.name)] = e.value;
        else if (isObj(from.configMapKeyRef)) {
          const ref = from.configMapKeyRef;
          const ext = EXTERNAL.find((x) => x.kind === 'ConfigMap' && x.name === ref.name);
          env[String(e.name)] = ext?.sample?.[String(ref.key)] ?? 'sample';
        } else if (isObj(from.fieldRef)) env[String(e.name)] = 'meshfed-pod-0';
      }
      for (const name of Object.keys(env)) {
        if (!name.startsWith('MESHFED_')) continue;
        const reads = [...command.options, ...program.options].some((o) => o.envVar === name);
        if (!reads) problems.push(`${at}: env ${name} is read by no option of meshfed ${args[0] ?? ''}`);
      }
      // $(VAR) in args is expanded by the kubelet only when VAR is in the container's env.
      const expanded = args.map((arg) =>
        arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, name: string) => {
          if (env[name] === undefined)
            problems.push(`${at}: $(${name}) in args is not in the container's env`);
          return env[name] ?? '';
        }),
      );
      let parsed: ParsedCommand;
      try {
        parsed = await parseWithCli(
          expanded,
          Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('MESHFED_'))),
        );
      } catch (err) {
        problems.push(`${at}: meshfed refuses its command line: ${(err as Error).message}`);
        continue;
      }
      checked++;
      const listeners = LISTENERS[parsed.command] ?? [];
      const expected = new Set<number>();
      for (const l of listeners) {
        if (!command.options.some((o) => o.attributeName() === l.flag)) {
          problems.push(`${at}: meshfed ${parsed.command} has no option for its listener "${l.flag}"`);
          continue;
        }
        const value = parsed.opts[l.flag];
        expected.add(typeof value === 'number' ? value : l.fallback);
      }
      for (const pending of PENDING_LISTENERS[parsed.command] ?? []) {
        const grown = command.options.filter((o) => pending.optionPattern.test(o.long ?? ''));
        if (grown.length > 0) {
          problems.push(
            `${at}: meshfed ${parsed.command} now has ${grown.map((o) => o.long).join(', ')}: pass it in the manifest and drop its PENDING_LISTENERS entry`,
          );
        } else {
          console.warn(`PENDING in ${at}: port ${pending.port} is declared but not served: ${pending.why}`);
          expected.add(pending.port);
        }
      }
      const exposed = new Set(list(c.ports).map((p) => Number(p.containerPort)));
      const shown = (ports: Set<number>): string => [...ports].sort((x, y) => x - y).join(',');
      if (shown(exposed) !== shown(expected))
        problems.push(`${at}: container ports ${shown(exposed)} but meshfed listens on ${shown(expected)}`);
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(3);
  });

  it('a flag the CLI does not have is caught (the check can fail)', async () => {
    await expect(parseWithCli(['global-cp', '--no-such-flag=1'], {})).rejects.toThrow(/unknown option/);
    await expect(parseWithCli(['global-cp', '--store=ftp://x'], {})).rejects.toThrow(
      /unsupported store scheme/,
    );
  });

  /** The container of a workload, its command line parsed by the real CLI as in the pod. */
  async function parsedContainer(name: string): Promise<ParsedCommand> {
    const doc = kube.find((d) => d.obj.kind === 'Deployment' && nameOf(d.obj) === name);
    if (!doc) throw new Error(`no Deployment ${name}`);
    const c = list(podTemplates([doc])[0]?.spec.containers)[0] as Json;
    const env: Record<string, string> = {};
    for (const e of list(c.env)) {
      const ref =
        isObj(e.valueFrom) && isObj(e.valueFrom.configMapKeyRef) ? e.valueFrom.configMapKeyRef : undefined;
      const sample = EXTERNAL.find((x) => x.name === ref?.name)?.sample?.[String(ref?.key)];
      if (sample !== undefined) env[String(e.name)] = sample;
    }
    return parseWithCli(strings(c.args), env);
  }

  it('runs zone-cp synced from global, with Kubernetes discovery, TokenReview, TLS and a durable store', async () => {
    const { opts } = await parsedContainer('meshfed-zone-cp');
    const options = zoneCpOptionsFrom(opts as unknown as Parameters<typeof zoneCpOptionsFrom>[0]);
    expect(options.zone).toBe('zone-b');
    expect(options.global).toEqual({
      addresses: ['172.18.0.2:30685'],
      caFile: '/etc/meshfed/zone/global-ca.crt',
      tokenFile: '/etc/meshfed/zone/zone-token',
    });
    expect(options.gatewayAddress).toBe('172.18.0.3:30443');
    expect(options.discovery?.map((d) => d.name)).toEqual(['kubernetes']);
    // The audience of the projected token the injected sidecar presents.
    expect(options.kubernetes?.audiences).toEqual([TOKEN_AUDIENCE]);
    expect(options.tlsCertFile).toBeDefined();
    // The store lives on the zone's PersistentVolumeClaim.
    const doc = kube.find((d) => d.obj.kind === 'Deployment' && nameOf(d.obj) === 'meshfed-zone-cp');
    const spec = podTemplates(doc ? [doc] : [])[0]?.spec ?? {};
    const mount = list((list(spec.containers)[0] as Json).volumeMounts).find((m) =>
      String(options.storeUrl).startsWith(`file://${String(m.mountPath)}`),
    );
    const volume = list(spec.volumes).find((v) => v.name === mount?.name);
    expect(isObj(volume?.persistentVolumeClaim)).toBe(true);
  });

  it('runs global-cp over TLS with its options consistent', async () => {
    const { opts } = await parsedContainer('meshfed-global-cp');
    const options = globalCpOptionsFrom(opts as unknown as Parameters<typeof globalCpOptionsFrom>[0]);
    expect(options.host).toBe('0.0.0.0');
    expect(options.tlsCertFile).toBe('/etc/meshfed/tls/tls.crt');
    expect(options.storeUrl).toMatch(/^redis:\/\//);
  });

  it('injects a sidecar and init container whose command lines their entries accept (once the commands exist)', async () => {
    const pod = { metadata: { name: 'web' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } };
    const { sidecar, init } = injectedParts(pod, {
      proxyImage: MESHFED_IMAGE,
      zoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678',
      zone: 'zone-a',
    });
    // The sidecar runs the lean entry (meshfed-proxy): its command line and variables through that entry's parser.
    expect(strings(sidecar.command)).toEqual(['meshfed-proxy']);
    const sidecarEnv = Object.fromEntries(
      list(sidecar.env)
        .filter((e) => typeof e.value === 'string' && String(e.name).startsWith('MESHFED_'))
        .map((e) => [String(e.name), String(e.value)]),
    );
    const parsed = parseFlags(PROXY_FLAGS, strings(sidecar.args), sidecarEnv);
    expect(parsed.values).toMatchObject({
      mdsAddress: 'meshfed-zone-cp.meshfed-system.svc:5678',
      mdsCaFile: expect.stringMatching(/^\//),
      mdsTokenFile: expect.stringMatching(/^\//),
      inboundPort: 15006,
      outboundPort: 15001,
    });
    const program = buildProgram();
    for (const container of [init]) {
      const args = strings(container.args);
      const name = args[0] ?? '';
      if (!cliCommand(program, name)) {
        console.warn(
          `PENDING: the injected ${String(container.name)} runs "meshfed ${name}", which the CLI does not have yet`,
        );
        continue;
      }
      const env = Object.fromEntries(
        list(container.env)
          .filter((e) => typeof e.value === 'string' && String(e.name).startsWith('MESHFED_'))
          .map((e) => [String(e.name), String(e.value)]),
      );
      await expect(parseWithCli(args, env)).resolves.toMatchObject({ command: name });
    }
  });

  it('runs global-cp as two replicas on the Redis of deploy/global, probed on /readyz and /healthz', () => {
    const global = kube.find((d) => d.obj.kind === 'Deployment' && nameOf(d.obj) === 'meshfed-global-cp');
    if (!global) throw new Error('no global-cp Deployment');
    expect((global.obj.spec as Json).replicas).toBe(2);
    const [t] = podTemplates([global]);
    const c = list(t?.spec.containers)[0] as Json;
    const store =
      strings(c.args)
        .find((a) => a.startsWith('--store='))
        ?.slice('--store='.length) ?? '';
    const url = new URL(store);
    expect(url.protocol).toBe('redis:');
    const redis = kube.find((d) => d.obj.kind === 'Service' && nameOf(d.obj) === 'meshfed-redis');
    if (!redis) throw new Error('no Redis Service');
    expect(url.hostname).toBe(`${nameOf(redis.obj)}.${namespaceOf(redis.obj)}.svc`);
    expect(list((redis.obj.spec as Json).ports).map((p) => p.port)).toContain(Number(url.port));
    expect((c.readinessProbe as Json).httpGet).toMatchObject({ path: '/readyz', scheme: 'HTTPS' });
    expect((c.livenessProbe as Json).httpGet).toMatchObject({ path: '/healthz', scheme: 'HTTPS' });
    const pdb = kube.find(
      (d) => d.obj.kind === 'PodDisruptionBudget' && nameOf(d.obj) === 'meshfed-global-cp',
    );
    expect((pdb?.obj.spec as Json | undefined)?.minAvailable).toBe(1);
  });
});

// ---------------------------------------------------------------- kind

/** The part of kind's v1alpha4 Cluster config deploy/kind uses; closed, so a typo is an error. */
const kindClusterSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'apiVersion', 'name', 'networking', 'nodes'],
  properties: {
    kind: { const: 'Cluster' },
    apiVersion: { const: 'kind.x-k8s.io/v1alpha4' },
    name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
    featureGates: { type: 'object' },
    runtimeConfig: { type: 'object' },
    containerdConfigPatches: { type: 'array', items: { type: 'string' } },
    kubeadmConfigPatches: { type: 'array', items: { type: 'string' } },
    networking: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ipFamily: { enum: ['ipv4', 'ipv6', 'dual'] },
        apiServerAddress: { type: 'string' },
        apiServerPort: { type: 'integer' },
        podSubnet: { type: 'string' },
        serviceSubnet: { type: 'string' },
        disableDefaultCNI: { type: 'boolean' },
        kubeProxyMode: { enum: ['iptables', 'ipvs', 'nftables', 'none'] },
        dnsSearch: { type: 'array', items: { type: 'string' } },
      },
    },
    nodes: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role'],
        properties: {
          role: { enum: ['control-plane', 'worker'] },
          image: { type: 'string' },
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          kubeadmConfigPatches: { type: 'array', items: { type: 'string' } },
          extraMounts: { type: 'array' },
          extraPortMappings: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['containerPort', 'hostPort'],
              properties: {
                containerPort: { type: 'integer', minimum: 1, maximum: 65535 },
                hostPort: { type: 'integer', minimum: 1, maximum: 65535 },
                listenAddress: { type: 'string' },
                protocol: { enum: ['TCP', 'UDP', 'SCTP'] },
              },
            },
          },
        },
      },
    },
  },
};

function cidr(text: string): { base: number; size: number } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(text);
  if (!m) throw new Error(`${text} is not an IPv4 CIDR`);
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) throw new Error(`${text} is not an IPv4 CIDR`);
  const base = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - bits);
  if (base % size !== 0) throw new Error(`${text} has host bits set`);
  return { base, size };
}

describe('deploy/kind cluster configs', () => {
  const configs = (): Array<{ file: string; obj: Json }> =>
    ['deploy/kind/cluster-a.yaml', 'deploy/kind/cluster-b.yaml'].map((file) => {
      const docs = loadYamlFile(file);
      expect(docs).toHaveLength(1);
      return { file, obj: docs[0] as Json };
    });

  it('are valid kind v1alpha4 Cluster configs', () => {
    const ajv = new Ajv({ allErrors: true, strict: true });
    const validate = ajv.compile(kindClusterSchema);
    for (const { file, obj } of configs()) {
      const ok = validate(obj);
      expect(`${file}: ${ok ? 'valid' : ajv.errorsText(validate.errors)}`).toBe(`${file}: valid`);
    }
    const typo = structuredClone(configs()[0]?.obj ?? {});
    (typo.networking as Json).podSubnett = '10.0.0.0/16';
    expect(validate(typo)).toBe(false);
  });

  it('give the clusters distinct names, non-overlapping subnets and distinct host ports', () => {
    const [a, b] = configs().map((c) => c.obj);
    if (!a || !b) throw new Error('two configs expected');
    expect(a.name).toBe('meshfed-a');
    expect(b.name).toBe('meshfed-b');
    const subnets = [a, b].flatMap((c) => [
      String((c.networking as Json).podSubnet),
      String((c.networking as Json).serviceSubnet),
    ]);
    const ranges = subnets.map(cidr);
    // kind's own Docker network is 172.18.0.0/16 by default; stay clear of it too.
    ranges.push(cidr('172.16.0.0/12'));
    for (let i = 0; i < ranges.length; i++)
      for (let j = i + 1; j < ranges.length; j++) {
        const x = ranges[i] as { base: number; size: number };
        const y = ranges[j] as { base: number; size: number };
        const overlap = x.base < y.base + y.size && y.base < x.base + x.size;
        expect(`${subnets[i] ?? ''} vs ${subnets[j] ?? '172.16.0.0/12'} overlap=${overlap}`).toBe(
          `${subnets[i] ?? ''} vs ${subnets[j] ?? '172.16.0.0/12'} overlap=false`,
        );
      }
    const hostPorts = [a, b].flatMap((c) =>
      list(c.nodes).flatMap((n) => list(n.extraPortMappings).map((m) => m.hostPort)),
    );
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  it("map every fixed NodePort of the cluster's manifests to the host, and up.sh uses the same ports", () => {
    const nodePorts = (dirs: string[]): number[] =>
      kube
        .filter((d) => dirs.includes(d.dir) && d.obj.kind === 'Service')
        .flatMap((d) => list((d.obj.spec as Json).ports))
        .map((p) => Number(p.nodePort))
        .filter((p) => p > 0);
    const mapped = (obj: Json): number[] =>
      list(obj.nodes).flatMap((n) => list(n.extraPortMappings).map((m) => Number(m.containerPort)));
    const [a, b] = configs().map((c) => c.obj);
    if (!a || !b) throw new Error('two configs expected');
    const aPorts = nodePorts(['global', 'zone']);
    const bPorts = nodePorts(['zone']);
    for (const p of aPorts) expect(p).toBeGreaterThanOrEqual(30000);
    for (const p of aPorts) expect(p).toBeLessThanOrEqual(32767);
    expect(new Set(aPorts).size).toBe(aPorts.length);
    expect(mapped(a).sort()).toEqual([...aPorts].sort());
    expect(mapped(b).sort()).toEqual([...bPorts].sort());
    const upSh = readFileSync(path.join(REPO_ROOT, 'deploy/kind/up.sh'), 'utf8');
    const kdsPort = kube.find((d) => d.obj.kind === 'Service' && nameOf(d.obj) === 'meshfed-global-kds');
    const gwPort = kube.find((d) => d.obj.kind === 'Service' && nameOf(d.obj) === 'meshfed-eastwest-gateway');
    expect(upSh).toContain(`KDS_NODE_PORT=${String(list((kdsPort?.obj.spec as Json).ports)[0]?.nodePort)}`);
    expect(upSh).toContain(
      `GATEWAY_NODE_PORT=${String(list((gwPort?.obj.spec as Json).ports)[0]?.nodePort)}`,
    );
  });
});
