/**
 * The zone's one gRPC/TLS port (5678) serving MDS and the CA. Its server
 * certificate is issued by the zone CA itself (DNS names `meshfed-zone-cp`,
 * `localhost` and the bind host), so a proxy that pins the trust bundle
 * can verify it; it is reissued when the CA rotates and at half-life.
 * Client certificates are requested but optional: token callers have
 * none, renewing workloads present theirs and TLS verifies them against
 * the trust bundle.
 */

import { isIP } from 'node:net';
import {
  Server,
  ServerCredentials,
  experimental,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { generateKeyPair } from '../core/pki/ca.js';
import { formatSpiffeId } from '../core/pki/spiffe.js';
import { ZONE_CP_SERVER_NAME } from '../core/ca/zone-channel.js';
import type { ZoneCaKeeper } from './ca/zone-ca-keeper.js';

type CaListener = Parameters<experimental.CertificateProvider['addCaCertificateListener']>[0];
type IdentityListener = Parameters<experimental.CertificateProvider['addIdentityCertificateListener']>[0];

const SERVER_CERT_TTL_SECONDS = 24 * 3600;

/** Serves the zone CA's trust bundle and a server certificate it issued, following rotations. */
export class ZoneServerCertificates implements experimental.CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private ca: { caCertificate: Buffer } | null = null;
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  /** Expiry of the current server certificate. */
  notAfter: Date | undefined;

  constructor(
    private readonly keeper: ZoneCaKeeper,
    private readonly dnsNames: string[],
    private readonly logger: Logger,
  ) {
    this.unsubscribe = keeper.onChange(() => this.reissue());
    this.reissue();
  }

  // grpc-js subscribes before it registers the watcher that applies updates,
  // so the current material is handed over on the next microtask, not inline.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.caListeners.has(listener)) listener(this.ca);
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) listener(this.identity);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  close(): void {
    this.unsubscribe();
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
  }

  private reissue(): void {
    const ca = this.keeper.ca;
    const bundle = this.keeper.bundlePem;
    if (ca === undefined || bundle === '') return;
    try {
      const { privateKey, publicKey } = generateKeyPair();
      const issued = ca.signWorkload(publicKey, {
        spiffeId: formatSpiffeId({
          trustDomain: ca.trustDomain,
          namespace: 'meshfed-system',
          serviceAccount: 'zone-cp',
        }),
        ttlSeconds: SERVER_CERT_TTL_SECONDS,
        dnsNames: this.dnsNames,
      });
      this.notAfter = issued.notAfter;
      this.ca = { caCertificate: Buffer.from(bundle) };
      this.identity = {
        certificate: Buffer.from(issued.certPem + this.keeper.issuingChain.join('')),
        privateKey: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
      };
      for (const listener of this.caListeners) listener(this.ca);
      for (const listener of this.identityListeners) listener(this.identity);
      if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
      const halfLife = Math.max(60_000, (issued.notAfter.getTime() - Date.now()) / 2);
      this.renewTimer = setTimeout(() => this.reissue(), Math.min(halfLife, 2 ** 31 - 1));
      this.renewTimer.unref();
    } catch (err) {
      this.logger.error('cannot issue the zone CP server certificate', { err });
    }
  }
}

/** DNS names for the server certificate: the fixed control-plane name, localhost, the bind host if it is a name. */
export function serverDnsNames(host: string, extra: readonly string[] = []): string[] {
  const names = [ZONE_CP_SERVER_NAME, 'localhost', ...extra];
  if (isIP(host) === 0 && host !== '' && host !== 'localhost') names.push(host);
  return [...new Set(names)];
}

export interface GrpcServerHandle {
  readonly port: number;
  /** Stops accepting; ends streams after `graceMs`. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export async function startGrpcServer(options: {
  host: string;
  port: number;
  certificates: ZoneServerCertificates;
  services: Array<{ definition: ServiceDefinition; handlers: UntypedServiceImplementation }>;
}): Promise<GrpcServerHandle> {
  const server = new Server({
    'grpc.max_receive_message_length': 1024 * 1024,
    'grpc.max_concurrent_streams': 100,
    // Channelz keeps trace state per socket and call: memory the zone spends on thousands of proxies.
    'grpc.enable_channelz': 0,
    // Proxies ping every 20 s to notice a dead connection; allow it.
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
  });
  for (const service of options.services) server.addService(service.definition, service.handlers);
  const credentials: ServerCredentials = experimental.createCertificateProviderServerCredentials(
    options.certificates,
    options.certificates,
    false,
  );
  const address = `${isIP(options.host) === 6 ? `[${options.host}]` : options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, bound) => {
      if (err) {
        reject(
          new MeshError(
            ErrorCodes.CONFIG,
            /in use|EADDRINUSE/i.test(err.message)
              ? `port ${options.port} on ${options.host} is already in use`
              : `cannot listen on ${address}: ${err.message}`,
          ),
        );
      } else resolve(bound);
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    close(graceMs = 2000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}
