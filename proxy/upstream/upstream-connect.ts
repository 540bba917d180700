/**
 * Opening one upstream connection: plain TCP to an app or a workload
 * without a sidecar, or mTLS to a peer proxy (directly or through an
 * east-west gateway) with the mesh SNI, ALPN, TLS session resumption, a
 * connect timeout, and the peer's SPIFFE ID checked against the identities
 * the endpoint may present. The chain itself is verified by OpenSSL against
 * the trust roots in the secure context.
 */

import net from 'node:net';
import tls, { type PeerCertificate } from 'node:tls';
import type { TlsMaterial } from '../tls/tls-material.js';
import { spiffeIdOfAltName } from '../tls/tls-material.js';

/** Set on a socket once TCP (plaintext) or the TLS handshake completed: later errors are resets, not connect failures. */
export const kConnected = Symbol('meshfed.connected');
/** The verified peer SPIFFE ID of an upstream TLS socket. */
export const kPeerId = Symbol('meshfed.peerId');

export interface TaggedSocket extends net.Socket {
  [kConnected]?: boolean;
  [kPeerId]?: string;
}

export interface ConnectTarget {
  address: string;
  port: number;
  /** mTLS to a peer proxy; false = plaintext. */
  tls: boolean;
  sni: string;
  alpn: string[];
  /** SPIFFE IDs the peer may present (mTLS only). */
  identities: readonly string[];
  connectTimeoutMs: number;
}

/** Where the current TLS identity and the resumption cache come from. */
export interface TlsProvider {
  material(): TlsMaterial | undefined;
  sessions: SessionCache;
}

/** A TLS session to resume, and the SPIFFE ID the server proved when it was made. */
export interface CachedSession {
  ticket: Buffer;
  /**
   * A resumed handshake carries no certificate (Node reports none), so the
   * identity checked on the full handshake is kept with its session.
   */
  peerId: string;
}

/** TLS sessions per upstream (address, port, SNI), for resumption; emptied when credentials change. */
export class SessionCache {
  readonly #sessions = new Map<string, CachedSession>();
  readonly #max: number;

  constructor(max = 1024) {
    this.#max = max;
  }

  get(key: string): CachedSession | undefined {
    return this.#sessions.get(key);
  }

  set(key: string, session: CachedSession): void {
    if (!this.#sessions.has(key) && this.#sessions.size >= this.#max) {
      const oldest = this.#sessions.keys().next();
      if (!oldest.done) this.#sessions.delete(oldest.value);
    }
    this.#sessions.set(key, session);
  }

  clear(): void {
    this.#sessions.clear();
  }

  get size(): number {
    return this.#sessions.size;
  }
}

function onConnectTimeout(socket: TaggedSocket, ms: number, address: string, port: number): void {
  if (socket[kConnected] !== true) {
    socket.destroy(
      Object.assign(new Error(`connect to ${address}:${port} timed out after ${ms} ms`), {
        code: 'ETIMEDOUT',
      }),
    );
  }
}

function markConnected(this: TaggedSocket): void {
  this[kConnected] = true;
  const timer = (this as TaggedSocket & { [kTimer]?: NodeJS.Timeout })[kTimer];
  if (timer !== undefined) clearTimeout(timer);
}

const kTimer = Symbol('meshfed.connectTimer');

/** The identity the session offered for resumption was made with. */
const kOfferedPeer = Symbol('meshfed.offeredPeer');

/** A resumed session skipped checkServerIdentity: its identity is the one cached with the session. */
function onSecureConnect(this: tls.TLSSocket & TaggedSocket & { [kOfferedPeer]?: string }): void {
  if (this[kPeerId] === undefined) {
    this[kPeerId] =
      (this.isSessionReused() ? this[kOfferedPeer] : undefined) ??
      spiffeIdOfAltName(this.getPeerCertificate(false)?.subjectaltname);
  }
  markConnected.call(this);
}

/**
 * Opens the connection. Errors surface as the socket's 'error' event (the
 * HTTP client forwards them to the request); `socket[kConnected]` tells a
 * connect failure from a later reset.
 */
export function connectUpstream(target: ConnectTarget, provider: TlsProvider | undefined): TaggedSocket {
  let socket: TaggedSocket;
  if (!target.tls) {
    socket = net.connect({ host: target.address, port: target.port, noDelay: true });
    socket.once('connect', markConnected);
  } else {
    const material = provider?.material();
    if (material === undefined || provider === undefined) {
      // Fail like a refused connection, asynchronously as callers expect.
      socket = new net.Socket() as TaggedSocket;
      const err = Object.assign(new Error('no workload certificate yet: cannot open mTLS connections'), {
        code: 'MESHFED_NO_CERTIFICATE',
      });
      process.nextTick(() => socket.destroy(err));
      return socket;
    }
    // Identities are part of the key: a resumed session skips checkServerIdentity.
    const sessionKey = `${target.address}:${target.port}/${target.sni}/${target.identities.join(',')}`;
    const identities = target.identities;
    const offered = provider.sessions.get(sessionKey);
    const tlsSocket = tls.connect({
      host: target.address,
      port: target.port,
      servername: target.sni,
      secureContext: material.context,
      ...(target.alpn.length > 0 ? { ALPNProtocols: target.alpn } : {}),
      session: offered?.ticket,
      checkServerIdentity(_host: string, cert: PeerCertificate): Error | undefined {
        const id = spiffeIdOfAltName(cert.subjectaltname);
        if (id === '') return new Error('the peer certificate has no SPIFFE ID');
        if (!identities.includes(id)) {
          return Object.assign(new Error(`peer identity ${id} is not one of ${identities.join(', ')}`), {
            code: 'MESHFED_PEER_IDENTITY',
          });
        }
        (tlsSocket as TaggedSocket)[kPeerId] = id;
        return undefined;
      },
    }) as tls.TLSSocket & TaggedSocket & { [kOfferedPeer]?: string };
    tlsSocket[kOfferedPeer] = offered?.peerId;
    tlsSocket.setNoDelay(true);
    tlsSocket.on('session', (ticket: Buffer) => {
      const remember = (): void => {
        const peerId = tlsSocket[kPeerId];
        if (peerId) provider.sessions.set(sessionKey, { ticket, peerId });
      };
      // TLS 1.3 tickets come after the handshake; a TLS 1.2 ticket before the identity check has run.
      if (tlsSocket[kPeerId] === undefined) tlsSocket.once('secureConnect', remember);
      else remember();
    });
    tlsSocket.once('secureConnect', onSecureConnect);
    socket = tlsSocket;
  }
  if (target.connectTimeoutMs > 0) {
    (socket as TaggedSocket & { [kTimer]?: NodeJS.Timeout })[kTimer] = setTimeout(
      onConnectTimeout,
      target.connectTimeoutMs,
      socket,
      target.connectTimeoutMs,
      target.address,
      target.port,
    ).unref();
    socket.once('close', clearConnectTimer);
  }
  return socket;
}

function clearConnectTimer(this: TaggedSocket & { [kTimer]?: NodeJS.Timeout }): void {
  if (this[kTimer] !== undefined) clearTimeout(this[kTimer]);
}
