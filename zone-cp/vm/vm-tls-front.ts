/**
 * HTTPS on the zone REST port with a certificate from the zone CA, so a
 * joining VM can pin the mesh CA by fingerprint: `meshfed vm-agent join
 * --zone-cp https://<zone>:5682` always dials with SNI `meshfed-zone-cp`
 * (the name every zone CP server certificate carries, as on the gRPC port)
 * and checks that the chain ends in the pinned CA.
 *
 * - REST served in plain HTTP (loopback): a connection whose first byte is
 *   a TLS handshake record (0x16) is terminated here with the zone-CA
 *   certificate; anything else is plain HTTP as before.
 * - REST served with an operator's certificate (`--tls-cert`): SNI
 *   `meshfed-zone-cp` selects the zone-CA certificate, every other name the
 *   operator's.
 *
 * Either way the request lands in the same REST handler. The chain sent
 * includes the roots, so a VM pinning the mesh root needs nothing else. The
 * certificate follows CA rotations and is reissued at half-life.
 */

import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer, TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
import { ZONE_CP_SERVER_NAME } from '../../core/ca/zone-channel.js';
import type { Logger } from '../../core/log.js';
import type { ZoneCaKeeper } from '../ca/zone-ca-keeper.js';
import { ZoneServerCertificates, serverDnsNames } from '../grpc-server.js';

type ConnectionListener = (socket: Socket) => void;

const TLS_RECORD_HANDSHAKE = 0x16;
/** A client must start talking (and finish its TLS handshake) within this. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

export class ZoneTlsFront {
  private readonly certificates: ZoneServerCertificates;
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private bundle: Buffer | null = null;
  private context: SecureContext | undefined;
  private readonly attached = new Set<HttpServer>();
  private closed = false;

  constructor(keeper: ZoneCaKeeper, host: string, logger: Logger) {
    this.certificates = new ZoneServerCertificates(keeper, serverDnsNames(host), logger);
    this.certificates.addIdentityCertificateListener((identity) => {
      this.identity = identity;
      this.rebuild();
    });
    this.certificates.addCaCertificateListener((ca) => {
      this.bundle = ca?.caCertificate ?? null;
      this.rebuild();
    });
  }

  /** True once a zone-CA certificate is available (the zone CA is loaded). */
  get ready(): boolean {
    return this.context !== undefined;
  }

  /** Serves zone-CA TLS on `server`'s port as described above. */
  attach(server: HttpServer): void {
    this.attached.add(server);
    if (server instanceof TlsServer) {
      if (this.context !== undefined) server.addContext(ZONE_CP_SERVER_NAME, this.context);
      return;
    }
    // The REST server's own connection handling, called for every connection once its protocol is known.
    const plain = server.listeners('connection') as ConnectionListener[];
    server.removeAllListeners('connection');
    const handOver = (socket: Socket): void => {
      for (const listener of plain) listener.call(server, socket);
    };
    server.on('connection', (socket: Socket) => {
      socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
      const onEnd = (): void => {
        socket.destroy();
      };
      const onReadable = (): void => {
        const chunk: Buffer | null = socket.read();
        if (chunk === null) return;
        socket.off('readable', onReadable);
        socket.off('end', onEnd);
        socket.unshift(chunk);
        if (chunk[0] !== TLS_RECORD_HANDSHAKE) {
          socket.setTimeout(0);
          handOver(socket);
          return;
        }
        this.terminateTls(socket, handOver);
      };
      socket.on('readable', onReadable);
      // Closed before saying anything.
      socket.once('end', onEnd);
      socket.on('error', () => socket.destroy());
    });
  }

  close(): void {
    this.closed = true;
    this.certificates.close();
  }

  private terminateTls(socket: Socket, handOver: (socket: Socket) => void): void {
    const context = this.context;
    if (context === undefined || this.closed) {
      // No zone CA yet (a managed zone waiting for global): nothing to present.
      socket.destroy();
      return;
    }
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ['http/1.1'],
    });
    tls.on('error', () => tls.destroy());
    tls.once('secure', () => {
      socket.setTimeout(0);
      handOver(tls);
    });
  }

  private rebuild(): void {
    if (this.identity === null || this.bundle === null) return;
    // The roots travel with the chain: the VM pins one of them and has nothing else yet.
    this.context = createSecureContext({
      cert: Buffer.concat([this.identity.certificate, Buffer.from('\n'), this.bundle]),
      key: this.identity.privateKey,
      minVersion: 'TLSv1.2',
    });
    for (const server of this.attached) {
      // The newest context added for a name is the one used.
      if (server instanceof TlsServer) server.addContext(ZONE_CP_SERVER_NAME, this.context);
    }
  }
}
