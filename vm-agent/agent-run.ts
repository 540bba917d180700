/**
 * `meshfed vm-agent run` (what systemd starts): the VM's sidecar and what
 * keeps it in the mesh.
 *
 * - The sidecar (proxy/ `startProxy`): inbound mTLS to the local service,
 *   outbound for the VM's own calls, started with the certificate on disk
 *   so the VM serves at once after a reboot, even before the zone answers.
 * - Its certificate: renewed at half-life by core/ca's CertificateManager
 *   with the current certificate as credential (the join token is never
 *   needed again); every new one is installed in the sidecar and saved.
 * - Its config over MDS (core/mds MdsClient), reconnecting with backoff.
 * - The WorkloadGroup's probe and the heartbeat that reports it.
 * - status.json for `meshfed vm-agent status`.
 */

import { X509Certificate } from 'node:crypto';
import { CertificateManager, type CurrentCertificate } from '../core/ca/cert-manager.js';
import { ErrorCodes, MeshError, isMeshError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { MdsClient } from '../core/mds/mds-client.js';
import { startProxy, type ProxyHandle } from '../proxy/index.js';
import type { AgentConfig, ProbeSpec } from './agent-config.js';
import { ConfigDir, type AgentStatus, type Credentials } from './agent-files.js';
import { Heartbeater, type HeartbeatResult } from './agent-heartbeat.js';
import { Prober } from './agent-probe.js';
import { parseZoneCpUrl, type ZoneTarget } from './zone-client.js';

export interface RunOptions {
  configDir: string;
  logger?: Logger;
  /** How long stopping waits for requests in flight. Default 10 s. */
  drainTimeoutMs?: number;
}

export interface AgentHandle {
  readonly proxy: ProxyHandle;
  readonly config: AgentConfig;
  /** What status.json holds now. */
  status(): AgentStatus;
  /** Reports the VM unhealthy, drains the sidecar and stops. Idempotent. */
  close(): Promise<void>;
}

interface Current extends Credentials {
  serial: string;
  notAfter: Date;
}

const CA_RETRY_MAX_MS = 30_000;

function describeCert(credentials: Credentials): Current {
  const leaf = new X509Certificate(credentials.certChainPem);
  return { ...credentials, serial: leaf.serialNumber, notAfter: new Date(leaf.validTo) };
}

/** A sidecar listen failure as one line that names the port and what to do. */
function explainListen(err: unknown, config: AgentConfig): unknown {
  const e = err as NodeJS.ErrnoException & { port?: number };
  if (e.code !== 'EADDRINUSE' && e.code !== 'EACCES') return err;
  const which = (Object.entries(config.ports) as Array<[string, number]>).find(([, p]) => p === e.port)?.[0];
  const flag = which === undefined ? 'the --*-port flags' : `--${which}-port`;
  const what = e.code === 'EADDRINUSE' ? 'is already in use' : 'may not be bound by this user';
  return new MeshError(
    ErrorCodes.CONFIG,
    `port ${String(e.port)}${which === undefined ? '' : ` (${which})`} ${what}: stop what listens there, or run meshfed vm-agent join again with ${flag}`,
    { cause: err },
  );
}

export async function runAgent(options: RunOptions): Promise<AgentHandle> {
  const logger = options.logger ?? createLogger('vm-agent');
  const dir = new ConfigDir(options.configDir);
  let config = await dir.readConfig();
  let current = describeCert(await dir.readCredentials());
  if (current.notAfter.getTime() <= Date.now()) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `the certificate in ${dir.path('cert-chain.pem')} expired at ${current.notAfter.toISOString()} (the VM was away longer than its certificate lives): run meshfed vm-agent join again with a new token`,
    );
  }
  const target: ZoneTarget = {
    url: parseZoneCpUrl(config.zoneCp),
    ...(config.caFingerprint === undefined ? { insecure: true } : { pin: config.caFingerprint }),
  };
  const proxyId = `${config.workloadEntry}.${config.namespace}`;
  const startedAt = new Date().toISOString();
  const status: AgentStatus = {
    pid: process.pid,
    startedAt,
    updatedAt: startedAt,
    zoneConnected: false,
    certificate: { serial: current.serial, notAfter: current.notAfter.toISOString(), renewedAt: startedAt },
    probe: { state: config.probe === undefined ? 'none' : 'unknown' },
  };

  const proxy = await startProxy({
    workload: config.workloadEntry,
    namespace: config.namespace,
    proxyId,
    ports: config.ports,
    inboundHost: '0.0.0.0',
    logger: logger.child('proxy'),
    ...(options.drainTimeoutMs === undefined ? {} : { limits: { drainTimeoutMs: options.drainTimeoutMs } }),
  }).catch((err: unknown) => {
    throw explainListen(err, config);
  });
  // Installed once listening, so a port in use fails before anything else is said.
  proxy.setCredentials(current);
  status.ports = { ...proxy.ports };

  let statusTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const saveStatus = (): void => {
    if (statusTimer !== undefined || closed) return;
    statusTimer = setTimeout(() => {
      statusTimer = undefined;
      status.updatedAt = new Date().toISOString();
      status.configVersion = proxy.version;
      dir.writeStatus(status).catch((err: unknown) => logger.warn('cannot write status.json', { err }));
    }, 50);
  };

  // Certificates: the one on disk is the credential for the first renewal.
  const certificates = new CertificateManager({
    address: config.grpcAddress,
    caPem: current.trustBundlePem,
    bootstrap: () => ({ certPem: current.certChainPem, keyPem: current.keyPem }),
    ...(config.certTtlSeconds === undefined ? {} : { ttlSeconds: config.certTtlSeconds }),
    logger: logger.child('ca'),
  });
  certificates.on('rotated', (cert: CurrentCertificate) => {
    current = { ...cert };
    try {
      proxy.setCredentials(cert);
    } catch (err) {
      logger.error('the zone CA issued a certificate the sidecar cannot use', { err });
    }
    status.certificate = {
      serial: cert.serial,
      notAfter: cert.notAfter.toISOString(),
      renewedAt: new Date().toISOString(),
    };
    delete status.lastRenewalError;
    saveStatus();
    dir
      .writeCredentials(cert)
      .catch((err: unknown) => logger.error('cannot save the renewed certificate', { err }));
  });
  certificates.on('renewalFailed', (err: unknown) => {
    status.lastRenewalError = (err as Error).message;
    saveStatus();
  });
  let caRetry: NodeJS.Timeout | undefined;
  const startCertificates = (delayMs: number): void => {
    certificates.start().catch((err: unknown) => {
      if (closed) return;
      status.lastRenewalError = (err as Error).message;
      saveStatus();
      const refused =
        isMeshError(err) && err.code !== ErrorCodes.UNAVAILABLE && err.code !== ErrorCodes.CLOSED;
      logger.warn(
        refused ? 'the zone CA refused to renew the certificate' : 'the zone CA is not reachable; retrying',
        {
          err,
          retryInMs: delayMs,
        },
      );
      caRetry = setTimeout(() => startCertificates(Math.min(delayMs * 2, CA_RETRY_MAX_MS)), delayMs);
    });
  };
  startCertificates(1000);

  const mds = new MdsClient({
    address: config.grpcAddress,
    caPem: () => current.trustBundlePem,
    credential: () => ({ certPem: current.certChainPem, keyPem: current.keyPem }),
    hello: {
      proxyId,
      kind: 'sidecar',
      workload: config.workloadEntry,
      namespace: config.namespace,
      softwareVersion: 'meshfed-vm-agent',
    },
    onSnapshot: (snapshot) => {
      proxy.applyReceived(snapshot);
      saveStatus();
    },
    logger: logger.child('mds'),
  });
  mds.on('connected', () => {
    status.zoneConnected = true;
    status.zoneConnectedSince = new Date().toISOString();
    delete status.lastZoneError;
    saveStatus();
  });
  mds.on('disconnected', (err: unknown) => {
    status.zoneConnected = false;
    delete status.zoneConnectedSince;
    if (err instanceof Error) status.lastZoneError = err.message;
    saveStatus();
  });
  mds.start();

  const prober = new Prober(config.probe, logger.child('probe'));
  const heartbeat = new Heartbeater({
    target,
    config: () => config,
    proof: () => ({ certChainPem: current.certChainPem, keyPem: current.keyPem }),
    health: () => ({ healthy: prober.healthy, message: prober.message }),
    logger: logger.child('heartbeat'),
  });
  const probeStatus = (): void => {
    status.probe = {
      state: prober.state,
      ...(prober.message === '' ? {} : { message: prober.message }),
      since: prober.since,
    };
    saveStatus();
  };
  prober.on('change', () => {
    probeStatus();
    heartbeat.beatNow();
  });
  heartbeat.on('ok', (result: HeartbeatResult) => {
    status.lastHeartbeatAt = new Date().toISOString();
    delete status.lastHeartbeatError;
    if (result.recreated)
      logger.info("the zone had lost this VM's WorkloadEntry; the heartbeat wrote it again");
    const probe: ProbeSpec | undefined = result.probe ?? undefined;
    if (
      JSON.stringify(probe) !== JSON.stringify(config.probe) ||
      result.heartbeatIntervalSeconds !== config.heartbeatIntervalSeconds
    ) {
      // The WorkloadGroup changed: follow it, and remember it across restarts.
      config = {
        ...config,
        heartbeatIntervalSeconds: result.heartbeatIntervalSeconds,
        ...(probe === undefined ? {} : { probe }),
      };
      if (probe === undefined) delete config.probe;
      prober.update(probe);
      probeStatus();
      dir.writeConfig(config).catch((err: unknown) => logger.warn('cannot save vm-agent.yaml', { err }));
    }
    saveStatus();
  });
  heartbeat.on('failed', (err: unknown) => {
    status.lastHeartbeatError = (err as Error).message;
    logger.warn('heartbeat failed', { err });
    saveStatus();
  });
  prober.start();
  probeStatus();
  heartbeat.start();
  logger.info('VM agent running', {
    workloadEntry: `${config.namespace}/${config.workloadEntry}`,
    spiffeId: config.spiffeId,
    zoneCp: config.zoneCp,
    grpc: config.grpcAddress,
    ports: proxy.ports,
  });

  let closing: Promise<void> | undefined;
  return {
    proxy,
    get config() {
      return config;
    },
    status: () => ({ ...status, configVersion: proxy.version }),
    close() {
      closing ??= (async () => {
        heartbeat.stop();
        prober.stop();
        // Unhealthy first: peers stop sending new requests while the sidecar drains the ones in flight.
        await heartbeat.sayGoodbye(2000);
        if (caRetry !== undefined) clearTimeout(caRetry);
        certificates.close();
        mds.close();
        await proxy.close();
        closed = true;
        if (statusTimer !== undefined) clearTimeout(statusTimer);
        status.zoneConnected = false;
        status.updatedAt = new Date().toISOString();
        await dir.writeStatus({ ...status, pid: 0 }).catch(() => undefined);
        logger.info('VM agent stopped');
      })();
      return closing;
    },
  };
}
