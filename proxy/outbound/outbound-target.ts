/**
 * Where an app's request is going: an absolute-form URI (the app uses the
 * proxy as HTTP_PROXY), the HTTP/2 `:authority`, or the Host header — then
 * the service that name denotes (FQDN or alias) and the service port.
 */

import type { CompiledOutbound, CompiledService } from '../config/config-types.js';
import type { ServicePort } from '../../core/mesh/snapshot.js';
import { splitRequestTarget } from '../http/request-target.js';

export interface Target {
  /** Host as the app wrote it, without port, lower-case. */
  hostname: string;
  /** The port the app named, or 0. */
  port: number;
  /** What goes upstream as Host / :authority. */
  authority: string;
  /** Origin-form path (with query). */
  path: string;
}

/** Parses `host`, `host:port`, `[v6]:port`; undefined when malformed. */
export function splitAuthority(authority: string): { hostname: string; port: number } | undefined {
  if (authority === '') return undefined;
  let hostname: string;
  let portText = '';
  if (authority.charCodeAt(0) === 91 /* [ */) {
    const close = authority.indexOf(']');
    if (close < 0) return undefined;
    hostname = authority.slice(1, close);
    if (close + 1 < authority.length) {
      if (authority.charCodeAt(close + 1) !== 58) return undefined;
      portText = authority.slice(close + 2);
    }
  } else {
    const colon = authority.indexOf(':');
    if (colon < 0) hostname = authority;
    else {
      hostname = authority.slice(0, colon);
      portText = authority.slice(colon + 1);
    }
  }
  let port = 0;
  if (portText !== '') {
    if (!/^\d{1,5}$/.test(portText)) return undefined;
    port = Number(portText);
    if (port < 1 || port > 65535) return undefined;
  }
  if (hostname === '') return undefined;
  return { hostname: hostname.toLowerCase(), port };
}

/**
 * Reads the target of an HTTP/1.1 request (`url` may be absolute-form) or
 * an HTTP/2 one (`authority` from :authority). Undefined when there is no
 * usable authority.
 */
export function readTarget(url: string, hostHeader: string | undefined): Target | undefined {
  let authority = hostHeader;
  let path = url;
  if (url.charCodeAt(0) !== 47 /* / */) {
    // Absolute form, as an app that uses this proxy as its HTTP_PROXY sends it. Plain http:// only:
    // an https:// target would be for a TLS-terminating proxy, which this port is not.
    if (url.slice(0, 7).toLowerCase() !== 'http://') return undefined;
    const split = splitRequestTarget(url);
    if (split === undefined) return undefined;
    authority = split.authority;
    path = split.path;
  }
  if (authority === undefined) return undefined;
  const host = splitAuthority(authority);
  if (host === undefined) return undefined;
  return { hostname: host.hostname, port: host.port, authority, path };
}

export function findService(outbound: CompiledOutbound, hostname: string): CompiledService | undefined {
  return outbound.byHost.get(hostname);
}

/** The service port a request addresses: the one named, else the service's default HTTP port. */
export function servicePort(service: CompiledService, port: number): ServicePort | undefined {
  return port === 0 ? service.defaultHttpPort : service.portMap.get(port);
}
