/**
 * Helpers for tests that run the real @kubernetes/client-node against the
 * fake API server: a KubeConfig pointing at it, TLS material, and the small
 * object builders the discovery tests share.
 */

import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Container, V1EndpointSlice } from '@kubernetes/client-node';

import { createRootCa, generateKeyPair, loadCa } from '../../core/pki/ca.js';
import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import type { FakeKubeApiServerOptions } from '../common/fake-kube-apiserver.js';

export const ADMIN_TOKEN = 'fake-admin-token';

export interface TlsMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A CA and a server certificate for `localhost`, made with meshfed's own PKI (no openssl needed). */
export function localhostTls(): TlsMaterial {
  const root = createRootCa({ trustDomain: 'cluster.local', commonName: 'fake kube CA' });
  const ca = loadCa(root.certPem, root.keyPem);
  const { privateKey, publicKey } = generateKeyPair();
  const leaf = ca.signWorkload(publicKey, {
    spiffeId: 'spiffe://cluster.local/ns/kube-system/sa/apiserver',
    dnsNames: ['localhost'],
    ttlSeconds: 3600,
  });
  return {
    caPem: root.certPem,
    certPem: leaf.chainPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** Starts a fake over HTTPS with an admin token, as a real cluster would be reached. */
export async function startFake(
  options: FakeKubeApiServerOptions = {},
): Promise<{ fake: FakeKubeApiServer; kubeConfig: KubeConfig; tls: TlsMaterial }> {
  const tls = localhostTls();
  const fake = await FakeKubeApiServer.start({
    adminTokens: [ADMIN_TOKEN],
    tls: { certPem: tls.certPem, keyPem: tls.keyPem },
    ...options,
  });
  return { fake, kubeConfig: kubeConfigFor(fake.url, ADMIN_TOKEN, tls.caPem), tls };
}

/** A KubeConfig for `server` with a bearer token, loaded with `loadFromOptions` as a user would. */
export function kubeConfigFor(server: string, token: string, caPem?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'fake',
        server,
        ...(caPem === undefined
          ? { skipTLSVerify: true }
          : { caData: Buffer.from(caPem).toString('base64'), tlsServerName: 'localhost' }),
      },
    ],
    users: [{ name: 'admin', token }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'admin' }],
    currentContext: 'fake',
  });
  return kc;
}

export interface PodSpec {
  name: string;
  namespace: string;
  ip: string;
  labels?: Record<string, string>;
  ready?: boolean;
  sidecar?: boolean;
  serviceAccount?: string;
  node?: string;
  /** Container port name → number. */
  ports?: Record<string, number>;
}

export interface SliceEndpointSpec {
  ip: string;
  pod?: string;
  ready?: boolean;
  node?: string;
}

/**
 * Writes cluster objects the way the cluster's own controllers would: a
 * pod is created, then the kubelet reports its status; EndpointSlices are
 * written as the EndpointSlice controller writes them.
 */
export class ClusterWriter {
  readonly core: CoreV1Api;
  readonly discovery: DiscoveryV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  }

  async namespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name, labels } } });
  }

  async node(name: string, region: string, zone: string): Promise<void> {
    await this.core.createNode({
      body: {
        metadata: {
          name,
          labels: { 'topology.kubernetes.io/region': region, 'topology.kubernetes.io/zone': zone },
        },
      },
    });
  }

  async pod(spec: PodSpec): Promise<void> {
    const ports = Object.entries(spec.ports ?? {}).map(([name, containerPort]) => ({ name, containerPort }));
    const containers: V1Container[] = [{ name: 'app', image: 'app:1', ports }];
    if (spec.sidecar === true) containers.push({ name: 'meshfed-proxy', image: 'meshfed/proxy:dev' });
    await this.core.createNamespacedPod({
      namespace: spec.namespace,
      body: {
        metadata: { name: spec.name, labels: spec.labels ?? {} },
        spec: {
          containers,
          serviceAccountName: spec.serviceAccount ?? 'default',
          ...(spec.node === undefined ? {} : { nodeName: spec.node }),
        },
      },
    });
    await this.podStatus(spec.namespace, spec.name, spec.ip, spec.ready ?? true);
  }

  /** The kubelet's status report. */
  async podStatus(namespace: string, name: string, ip: string, ready: boolean): Promise<void> {
    const pod = await this.core.readNamespacedPod({ namespace, name });
    pod.status = {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    };
    await this.core.replaceNamespacedPodStatus({ namespace, name, body: pod });
  }

  async service(
    namespace: string,
    name: string,
    ports: Array<{ name: string; port: number; targetPort?: number | string; appProtocol?: string }>,
    annotations: Record<string, string> = {},
  ): Promise<void> {
    await this.core.createNamespacedService({
      namespace,
      body: { metadata: { name, annotations }, spec: { ports, selector: { app: name } } },
    });
  }

  async slice(
    namespace: string,
    name: string,
    service: string,
    endpoints: SliceEndpointSpec[],
    ports: Array<{ name: string; port: number }>,
  ): Promise<void> {
    await this.discovery.createNamespacedEndpointSlice({
      namespace,
      body: this.sliceBody(name, service, endpoints, ports),
    });
  }

  async replaceSlice(
    namespace: string,
    name: string,
    service: string,
    endpoints: SliceEndpointSpec[],
    ports: Array<{ name: string; port: number }>,
  ): Promise<void> {
    const current = await this.discovery.readNamespacedEndpointSlice({ namespace, name });
    const body = this.sliceBody(name, service, endpoints, ports);
    body.metadata = { ...body.metadata, resourceVersion: current.metadata?.resourceVersion };
    await this.discovery.replaceNamespacedEndpointSlice({ namespace, name, body });
  }

  private sliceBody(
    name: string,
    service: string,
    endpoints: SliceEndpointSpec[],
    ports: Array<{ name: string; port: number }>,
  ): V1EndpointSlice {
    return {
      metadata: { name, labels: { 'kubernetes.io/service-name': service } },
      addressType: 'IPv4',
      endpoints: endpoints.map((e) => ({
        addresses: [e.ip],
        conditions: { ready: e.ready ?? true },
        ...(e.pod === undefined ? {} : { targetRef: { kind: 'Pod', name: e.pod } }),
        ...(e.node === undefined ? {} : { nodeName: e.node }),
      })),
      ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
    };
  }
}
