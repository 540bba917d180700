/**
 * The control-plane side of a sidecar: a workload certificate from the
 * zone CA (key generated here, renewed at half-life by CertificateManager,
 * each new one installed with setCredentials) and config snapshots over MDS
 * (each applied with applySnapshot; a refusal becomes a NACK with the
 * reason and the last good config stays). The data path never waits on
 * either: they only swap references.
 */

import { readFileSync } from 'node:fs';
import { CertificateManager } from '../core/ca/cert-manager.js';
import type { ZoneCredential } from '../core/ca/zone-channel.js';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { MdsClient } from '../core/mds/mds-client.js';
import type { SidecarProxy } from './proxy.js';
import { EdgeReporter } from './telemetry/edge-report.js';
import type { ZoneCpOptions } from './proxy-options.js';

export interface ControlPlaneLink {
  /** Undefined when the proxy runs with static credentials (only MDS is used then). */
  readonly certificates: CertificateManager | undefined;
  readonly mds: MdsClient;
  close(): void;
}

function readToken(options: ZoneCpOptions): string {
  if (options.token !== undefined) return options.token;
  if (options.tokenFile === undefined) throw new MeshError(ErrorCodes.CONFIG, 'no proxy token configured');
  try {
    return readFileSync(options.tokenFile, 'utf8').trim();
  } catch (err) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `cannot read the proxy token file ${options.tokenFile}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Obtains the first certificate (rejects when the CA refuses the token),
 * then opens the MDS stream. Snapshots arrive asynchronously; /ready tells
 * when the first one is in.
 */
export async function connectControlPlane(
  proxy: SidecarProxy,
  options: ZoneCpOptions,
  logger: Logger,
  staticCredentials: { certPem: string; keyPem: string } | undefined,
): Promise<ControlPlaneLink> {
  const { proxyId, workload, namespace } = proxy.options;
  const certificates =
    staticCredentials !== undefined ? undefined : await startCertificates(proxy, options, logger);
  const mds = new MdsClient({
    address: options.address,
    caPem: () => {
      try {
        return certificates === undefined
          ? options.caPem
          : `${options.caPem}\n${certificates.current().trustBundlePem}`;
      } catch {
        return options.caPem;
      }
    },
    credential: (): ZoneCredential => {
      const hasToken = options.token !== undefined || options.tokenFile !== undefined;
      if (certificates === undefined) {
        return hasToken || staticCredentials === undefined
          ? { token: readToken(options) }
          : staticCredentials;
      }
      // The workload certificate proves who we are; the token is only the bootstrap.
      try {
        const cert = certificates.current();
        return { certPem: cert.certChainPem, keyPem: cert.keyPem };
      } catch {
        return { token: readToken(options) };
      }
    },
    hello: { proxyId, kind: 'sidecar', workload, namespace, softwareVersion: 'meshfed-proxy' },
    onSnapshot: (snapshot) => proxy.applyReceived(snapshot),
    logger: logger.child('mds'),
  });
  mds.on('rejected', (version: string, error: string) => proxy.noteRejected(version, error));
  mds.start();
  // Traffic per edge for the dashboard, on the same stream (docs/dashboard.md).
  const reporter = new EdgeReporter({
    metrics: proxy.metrics,
    send: (json) => mds.sendReport(json),
    logger: logger.child('telemetry'),
  });
  reporter.start();
  return {
    certificates,
    mds,
    close() {
      reporter.close();
      mds.close();
      certificates?.close();
    },
  };
}

async function startCertificates(
  proxy: SidecarProxy,
  options: ZoneCpOptions,
  logger: Logger,
): Promise<CertificateManager> {
  const certificates = new CertificateManager({
    address: options.address,
    caPem: options.caPem,
    bootstrap: () => ({ token: readToken(options) }),
    ...(options.certTtlSeconds === undefined ? {} : { ttlSeconds: options.certTtlSeconds }),
    logger: logger.child('ca'),
  });
  certificates.on('rotated', (cert: ReturnType<CertificateManager['current']>) => {
    try {
      proxy.setCredentials(cert);
    } catch (err) {
      logger.error('the CA issued a certificate the proxy cannot use', { err });
    }
  });
  certificates.on('renewalFailed', (err: unknown) =>
    logger.warn('certificate renewal failed; keeping the current one', { err }),
  );
  await certificates.start();
  return certificates;
}
