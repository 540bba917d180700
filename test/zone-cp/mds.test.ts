import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import type { GatewaySnapshot, SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import type { ProxyRecord } from '../../zone-cp/mds/proxy-record.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import { hello, openRawStream } from './raw-mds.js';

interface Proxy {
  client: MdsClient;
  received: ReceivedSnapshot[];
  /** Versions the client refused. */
  refused: string[];
}

const REVIEWS_VS = (subset: string) => `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: ${subset}}}]}]
`;

describe('MDS: per-proxy snapshots over gRPC', () => {
  let zone: TestZoneCp;
  const store = new MemoryStore();
  const proxies: Proxy[] = [];

  const world = () => [
    service('frontend', 'demo', [
      workload('frontend-1', 'demo', { annotations: { 'meshfed.io/dependencies': 'reviews' } }),
    ]),
    service('reviews', 'demo', [
      workload('reviews-1', 'demo', { labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'reviews' }),
      workload('reviews-2', 'demo', { labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' }),
    ]),
    service('ratings', 'demo', [
      workload('ratings-1', 'demo', { annotations: { 'meshfed.io/dependencies': 'details' } }),
    ]),
    service('details', 'demo', [workload('details-1', 'demo')]),
  ];

  beforeAll(async () => {
    zone = await startTestZoneCp({
      zone: 'zone-mds',
      store,
      pushDebounceMs: 50,
      // The ACK timeout outlasts a second proxy's connect and a push round on a loaded CI host.
      sessionLimits: { helloTimeoutMs: 500, ackTimeoutMs: 4000, messagesPerSecond: 50 },
    });
    zone.discovery?.set(world());
  });

  afterEach(() => {
    for (const p of proxies.splice(0)) p.client.close();
  });

  afterAll(async () => {
    await zone?.close();
    await store.close();
  });

  async function connect(
    workloadName: string,
    options: {
      proxyId?: string;
      reject?: (json: SidecarSnapshot) => string | undefined;
      serviceAccount?: string;
    } = {},
  ): Promise<Proxy> {
    const token = await zone.issueProxyToken({
      workload: workloadName,
      namespace: 'demo',
      serviceAccount: options.serviceAccount ?? workloadName.replace(/-\d+$/, ''),
    });
    const proxy: Proxy = { client: undefined as unknown as MdsClient, received: [], refused: [] };
    proxy.client = new MdsClient({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: () => ({ token }),
      hello: {
        proxyId: options.proxyId ?? `${workloadName}-proxy`,
        kind: 'sidecar',
        workload: workloadName,
        namespace: 'demo',
      },
      onSnapshot: (snapshot) => {
        const why = options.reject?.(snapshot.json as SidecarSnapshot);
        if (why !== undefined) {
          proxy.refused.push(snapshot.version);
          throw new Error(why);
        }
        proxy.received.push(snapshot);
      },
    });
    proxies.push(proxy);
    proxy.client.start();
    return proxy;
  }

  const inspect = async (): Promise<ProxyRecord[]> => {
    const answer = await http(`${zone.cp.restUrl}/inspect/proxies`, { token: zone.admin });
    expect(answer.status).toBe(200);
    return (answer.json as { proxies: ProxyRecord[] }).proxies;
  };
  const recordOf = async (id: string): Promise<ProxyRecord> => {
    const found = (await inspect()).find((p) => p.id === id);
    if (found === undefined) throw new Error(`${id} not in /inspect/proxies`);
    return found;
  };
  const hostsOf = (s: ReceivedSnapshot | undefined) =>
    (s?.json as SidecarSnapshot | undefined)?.outbound.services.map((svc) => svc.name) ?? [];

  it('pushes each proxy only what it calls, and a change only to the proxies it affects', async () => {
    await zone.apply(REVIEWS_VS('v1'));
    const fe = await connect('frontend-1');
    const rt = await connect('ratings-1');
    await waitFor(() => fe.received.length === 1 && rt.received.length === 1, { what: 'first snapshots' });
    expect(hostsOf(fe.received[0])).toEqual(['reviews']);
    expect(hostsOf(rt.received[0])).toEqual(['details']);
    await waitFor(
      async () => (await recordOf('frontend-1-proxy')).configVersion === fe.received[0]?.version,
      {
        what: 'the ACK to show',
      },
    );

    await zone.apply(REVIEWS_VS('v2'));
    await waitFor(() => fe.received.length === 2, { what: 'frontend to get the new route' });
    const route = (fe.received[1]?.json as SidecarSnapshot).outbound.services[0]?.http[0] as {
      route: Array<{ destination: { subset: string } }>;
    };
    expect(route.route[0]?.destination.subset).toBe('v2');
    // The push round that reached frontend compiled ratings too: it got nothing.
    const ratings = await recordOf('ratings-1-proxy');
    expect(ratings.pushes).toBe(1);
    expect(rt.received).toHaveLength(1);

    const frontend = await waitFor(
      async () => {
        const r = await recordOf('frontend-1-proxy');
        return r.configVersion === fe.received[1]?.version ? r : undefined;
      },
      { what: 'the second ACK' },
    );
    expect(frontend).toMatchObject({
      connected: true,
      kind: 'sidecar',
      workload: 'frontend-1',
      namespace: 'demo',
      credential: 'proxy-token',
      pushes: 2,
    });
    expect(frontend.lastAck?.version).toBe(fe.received[1]?.version);

    const config = await http(`${zone.cp.restUrl}/inspect/proxies/frontend-1-proxy/config`, {
      token: zone.admin,
    });
    expect(config.status).toBe(200);
    expect(config.headers.get('meshfed-config-version')).toBe(fe.received[1]?.version);
    expect(config.json).toEqual(fe.received[1]?.json);
  });

  it('records a NACK with its error, does not resend that version, and pushes the next different one', async () => {
    await zone.apply(REVIEWS_VS('v1'));
    const fe = await connect('frontend-1', {
      proxyId: 'picky',
      reject: (json) =>
        JSON.stringify(json).includes('"subset":"v2"') ? 'subset v2 is not allowed here' : undefined,
    });
    await waitFor(() => fe.received.length === 1, { what: 'first snapshot' });
    await zone.apply(REVIEWS_VS('v2'));
    const nacked = await waitFor(
      async () => {
        const r = await recordOf('picky');
        return r.lastNack !== undefined ? r : undefined;
      },
      { what: 'the NACK to be recorded' },
    );
    expect(nacked.lastNack?.error).toBe('subset v2 is not allowed here');
    expect(nacked.lastNack?.version).toBe(fe.refused[0]);
    expect(nacked.configVersion).toBe(fe.received[0]?.version);
    expect(nacked.status).toMatch(/refused/);

    // Another change triggers a push round (seen by a proxy that sees every service);
    // the refused version is recompiled for picky but not sent again.
    const observer = await connect('details-1', { proxyId: 'observer' });
    await waitFor(() => observer.received.length === 1, { what: 'observer snapshot' });
    zone.discovery?.set([...world(), service('extra', 'demo', [workload('extra-1', 'demo')])]);
    await waitFor(() => observer.received.length === 2, { what: 'the push round' });
    expect((await recordOf('picky')).pushes).toBe(2);
    expect(fe.refused).toHaveLength(1);
    const metricsBefore = (await http(`${zone.cp.restUrl}/metrics`)).text;
    expect(metricsBefore).toMatch(/meshfed_zone_mds_nacks_total\{kind="sidecar"[^}]*\} [1-9]/);
    zone.discovery?.set(world());

    await zone.apply(REVIEWS_VS('v1').replace('}}]}]', '}}], timeout: 5s}]'));
    await waitFor(() => fe.received.length === 2, { what: 'the next, different version' });
    expect((await recordOf('picky')).lastAck?.version).toBe(fe.received[1]?.version);
  });

  it('waits for a workload that is not discovered yet, then pushes when it appears', async () => {
    const late = await connect('late-1', { serviceAccount: 'late' });
    const record = await waitFor(async () => (await inspect()).find((p) => p.id === 'late-1-proxy'), {
      what: 'the proxy record',
    });
    expect(record.status).toMatch(/waiting for workload demo\/late-1/);
    expect(late.received).toHaveLength(0);
    // Accepted before any snapshot: the client knows it is connected.
    await waitFor(() => late.client.connected, { what: 'the client to see its Hello accepted' });
    zone.discovery?.set([
      ...world(),
      service('late', 'demo', [workload('late-1', 'demo', { serviceAccount: 'late' })]),
    ]);
    await waitFor(() => late.received.length === 1, { what: 'the snapshot once discovered' });
    zone.discovery?.set(world());
  });

  it('serves a proxy that authenticates with its workload certificate, and refuses another account', async () => {
    const token = await zone.issueProxyToken({
      workload: 'reviews-1',
      namespace: 'demo',
      serviceAccount: 'reviews',
    });
    const { privateKey, publicKey } = generateKeyPair();
    const cert = await requestCertificate({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: { token },
      privateKey,
      publicKey,
    });
    const credential = {
      certPem: cert.certChainPem,
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    const received: ReceivedSnapshot[] = [];
    const client = new MdsClient({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: () => credential,
      hello: { proxyId: 'reviews-by-cert', kind: 'sidecar', workload: 'reviews-1', namespace: 'demo' },
      onSnapshot: (s) => {
        received.push(s);
      },
    });
    client.start();
    try {
      await waitFor(() => received.length === 1, { what: 'snapshot over mTLS' });
      const record = await recordOf('reviews-by-cert');
      expect(record.credential).toBe('certificate');
      expect(record.certificateExpiry).toBe(cert.notAfter.toISOString());
    } finally {
      client.close();
    }
    // The same certificate (account reviews) cannot read the config of a workload running as details.
    const raw = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, credential);
    raw.send(hello({ proxy_id: 'impostor', workload: 'details-1', namespace: 'demo' }));
    const ended = await raw.ended;
    expect(ended.code).toBe(status.PERMISSION_DENIED);
    expect(ended.details).toMatch(/service account details/);
    raw.close();
  });

  it('ends malformed, late, flooding and unauthorized streams with a status that says why, and keeps serving', async () => {
    const token = await zone.issueProxyToken({
      workload: 'frontend-1',
      namespace: 'demo',
      serviceAccount: 'frontend',
    });
    const cases: Array<{
      messages: Parameters<ReturnType<typeof openRawStream>['send']>[0][];
      code: number;
      details: RegExp;
      credential?: { token: string };
    }> = [
      {
        messages: [{ ack: { version: 'x', nonce: 'y' } }],
        code: status.INVALID_ARGUMENT,
        details: /first message must be Hello/,
      },
      { messages: [{}], code: status.INVALID_ARGUMENT, details: /none of hello, ack, nack/ },
      {
        messages: [hello({ protocol_version: 7, workload: 'frontend-1', namespace: 'demo' })],
        code: status.FAILED_PRECONDITION,
        details: /version 7/,
      },
      {
        messages: [hello({ workload: 'reviews-1', namespace: 'demo' })],
        code: status.PERMISSION_DENIED,
        details: /not demo\/reviews-1/,
      },
      { messages: [hello({ kind: 'gateway' })], code: status.PERMISSION_DENIED, details: /gateway/ },
      {
        messages: [hello({ kind: 'toaster', workload: 'frontend-1', namespace: 'demo' })],
        code: status.INVALID_ARGUMENT,
        details: /kind/,
      },
      {
        messages: [hello({ proxy_id: '', workload: 'frontend-1', namespace: 'demo' })],
        code: status.INVALID_ARGUMENT,
        details: /proxy_id/,
      },
      { messages: [], code: status.DEADLINE_EXCEEDED, details: /no Hello/ },
      {
        messages: [hello({ workload: 'frontend-1', namespace: 'demo' })],
        code: status.UNAUTHENTICATED,
        details: /token refused/,
        credential: { token: 'mf1.e30.AAAA' },
      },
      {
        messages: [
          hello({ proxy_id: 'flood', workload: 'frontend-1', namespace: 'demo' }),
          ...Array.from({ length: 400 }, () => ({ ack: { version: 'v', nonce: 'n' } })),
        ],
        code: status.RESOURCE_EXHAUSTED,
        details: /messages per second/,
      },
    ];
    for (const c of cases) {
      const raw = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, c.credential ?? { token });
      for (const m of c.messages) raw.send(m);
      const ended = await raw.ended;
      expect({ code: ended.code, details: ended.details }).toEqual({
        code: c.code,
        details: expect.stringMatching(c.details),
      });
      raw.close();
    }
    // Everyone else is still served.
    const fe = await connect('frontend-1', { proxyId: 'after-abuse' });
    await waitFor(() => fe.received.length === 1, { what: 'a normal proxy after the abuse' });
  });

  it('does not resend the version a reconnecting proxy already runs', async () => {
    await zone.apply(REVIEWS_VS('v1'));
    const token = await zone.issueProxyToken({
      workload: 'frontend-1',
      namespace: 'demo',
      serviceAccount: 'frontend',
    });
    const before = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token });
    before.send(hello({ proxy_id: 'resuming', workload: 'frontend-1', namespace: 'demo' }));
    const first = await before.snapshot(1);
    before.send({ ack: { version: first.version, nonce: first.nonce } });
    await waitFor(async () => (await recordOf('resuming')).configVersion === first.version, {
      what: 'the ACK',
    });
    before.close();
    await waitFor(async () => (await recordOf('resuming')).connected === false, { what: 'the disconnect' });

    const after = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token });
    after.send(
      hello({
        proxy_id: 'resuming',
        workload: 'frontend-1',
        namespace: 'demo',
        current_version: first.version,
      }),
    );
    const resumed = await waitFor(
      async () => {
        const r = await recordOf('resuming');
        return r.connected ? r : undefined;
      },
      { what: 'the reconnect' },
    );
    expect(resumed.configVersion).toBe(first.version);
    expect(resumed.pushes).toBe(0);
    await zone.apply(REVIEWS_VS('v2'));
    const second = await after.snapshot(1);
    expect(second.version).not.toBe(first.version);
    after.close();
  });

  it("refuses a stream that claims another workload's proxy id, and keeps that proxy's stream", async () => {
    const ownerToken = await zone.issueProxyToken({
      workload: 'frontend-1',
      namespace: 'demo',
      serviceAccount: 'frontend',
    });
    const owner = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: ownerToken });
    owner.send(hello({ proxy_id: 'claimed', workload: 'frontend-1', namespace: 'demo' }));
    await owner.snapshot(1);
    const otherToken = await zone.issueProxyToken({
      workload: 'intruder-1',
      namespace: 'other',
      serviceAccount: 'intruder',
    });
    const intruder = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: otherToken });
    intruder.send(hello({ proxy_id: 'claimed', workload: 'intruder-1', namespace: 'other' }));
    expect(await intruder.ended).toEqual({
      code: 6, // ALREADY_EXISTS
      details: 'proxy id claimed is in use by sidecar demo/frontend-1, not sidecar other/intruder-1',
    });
    const record = await recordOf('claimed');
    expect(record).toMatchObject({ connected: true, namespace: 'demo', workload: 'frontend-1' });
    // The same workload reconnecting still replaces its own stream.
    const again = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: ownerToken });
    again.send(hello({ proxy_id: 'claimed', workload: 'frontend-1', namespace: 'demo' }));
    await again.snapshot(1);
    expect((await owner.ended).code).toBe(6);
    again.close();
  });

  it('holds back only a proxy that never ACKs: others keep converging, it gets the newest after the ACK timeout', async () => {
    await zone.apply(REVIEWS_VS('v1'));
    const token = await zone.issueProxyToken({
      workload: 'frontend-1',
      namespace: 'demo',
      serviceAccount: 'frontend',
    });
    const silent = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token });
    silent.send(hello({ proxy_id: 'silent', workload: 'frontend-1', namespace: 'demo' }));
    const first = await silent.snapshot(1);
    const fe = await connect('frontend-1', { proxyId: 'healthy' });
    await waitFor(() => fe.received.length === 1, { what: 'healthy first snapshot' });
    await zone.apply(REVIEWS_VS('v2'));
    await waitFor(() => fe.received.length === 2, { what: 'healthy proxy updated while another never ACKs' });
    // Same push round: the silent proxy has the new version compiled but not sent, one push in flight.
    const silentRecord = await recordOf('silent');
    expect(silentRecord.pushes).toBe(1);
    expect(silentRecord.pendingVersion).toBeDefined();
    expect(silentRecord.pendingVersion).not.toBe(first.version);
    // After the ACK timeout (4 s here) the newest version goes out.
    const second = await silent.snapshot(2);
    expect(second.version).toBe(silentRecord.pendingVersion);
    expect((await recordOf('silent')).pushes).toBe(2);
    silent.close();
  });

  it('serves the gateway table to an admin token and counts connected proxies', async () => {
    const raw = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: zone.admin });
    raw.send(hello({ proxy_id: 'gw-1', kind: 'gateway' }));
    const snapshot = await raw.snapshot(1);
    expect(snapshot.type).toBe('gateway/v1');
    const table = snapshot.json as GatewaySnapshot;
    expect(table.zone).toBe('zone-mds');
    expect(table.services.map((s) => s.name)).toEqual(['details', 'frontend', 'ratings', 'reviews']);
    const gatewayToken = await zone.issueProxyToken({
      workload: 'eastwest',
      namespace: 'meshfed-system',
      role: 'gateway',
    });
    const byToken = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: gatewayToken });
    byToken.send(hello({ proxy_id: 'gw-2', kind: 'gateway' }));
    expect((await byToken.snapshot(1)).version).toBe(snapshot.version);
    const metrics = await waitFor(
      async () => {
        const text = (await http(`${zone.cp.restUrl}/metrics`)).text;
        return /meshfed_zone_connected_proxies\{kind="gateway"[^}]*\} 2/.test(text) ? text : undefined;
      },
      { what: 'gateway gauge' },
    );
    expect(metrics).toMatch(/meshfed_zone_mds_pushes_total\{kind="gateway"[^}]*\} 2/);
    expect(metrics).toMatch(/meshfed_zone_mds_push_ack_seconds_count\{[^}]*\} [1-9]/);
    raw.close();
    byToken.close();
  });

  it('skips a bad policy written straight into the store, reports it, and still compiles the rest', async () => {
    await store.create({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'broken', namespace: 'demo' },
      spec: { host: 'reviews', subsets: [{ name: 'Not A Label', labels: { version: 'v1' } }], bogus: true },
    });
    const fe = await connect('frontend-1', { proxyId: 'after-bad-policy' });
    await waitFor(() => fe.received.length === 1, { what: 'snapshot despite the bad policy' });
    const errors = await http(`${zone.cp.restUrl}/inspect/errors`, { token: zone.admin });
    expect(errors.status).toBe(200);
    const resources = (errors.json as { resources: Array<{ kind: string; name: string; reason: string }> })
      .resources;
    expect(resources).toEqual([
      expect.objectContaining({
        kind: 'DestinationRule',
        name: 'broken',
        reason: expect.stringMatching(/bogus|subsets/),
      }),
    ]);
    const metrics = (await http(`${zone.cp.restUrl}/metrics`)).text;
    expect(metrics).toMatch(/meshfed_zone_config_errors\{severity="error"[^}]*\} 1/);
    await store.delete({ kind: 'DestinationRule', namespace: 'demo', name: 'broken' });
  });
});
