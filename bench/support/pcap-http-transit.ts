/**
 * Time an HTTP/1.1 proxy chain adds per request, from a loopback capture
 * (`tcpdump -i lo -s 256 --time-stamp-precision=nano`): from the request's
 * arrival at the chain's front port (generator → first proxy) to its
 * departure to the app (last proxy → app port), plus from the response's
 * arrival from the app to its departure to the generator. Kernel
 * timestamps, so neither the generator's nor the app's jitter is in it.
 *
 * Requests carry a unique query (`?n=<i>`, see fixed-rate-client.ts), which
 * matches front and back whichever pooled connection each took. A response
 * is matched to the request before it on its connection (HTTP/1.1 answers
 * in order; neither the generator nor the proxies pipeline). Only segments
 * that begin a request line or a status line are read, so requests and
 * responses must start a segment (they do, one write each, on loopback).
 */

import { flowsTo, readPackets, type Flow } from './pcap.js';

const METHODS = /^(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) [^ ?]*\?(?:[^ ]*&)?n=(\d+)[ &]/;

interface Exchange {
  /** The request's first segment: its `n`, and when it passed. */
  n: number;
  requestMs: number;
  /** When the response's first segment passed, if it did. */
  responseMs?: number;
}

/** The tagged exchanges on the flows to one port, by `n`. */
function exchangesOf(flows: Flow[]): Map<number, Exchange> {
  const byTag = new Map<number, Exchange>();
  for (const flow of flows) {
    const inOrder: Exchange[] = [];
    for (const segment of flow.up) {
      const match = METHODS.exec(segment.head.toString('latin1'));
      if (match === null) continue;
      const exchange = { n: Number(match[2]), requestMs: segment.ms };
      inOrder.push(exchange);
      byTag.set(exchange.n, exchange);
    }
    let next = 0;
    for (const segment of flow.down) {
      if (segment.head.toString('latin1', 0, 7) !== 'HTTP/1.') continue;
      const exchange = inOrder[next++];
      if (exchange !== undefined) exchange.responseMs = segment.ms;
    }
  }
  return byTag;
}

/**
 * Per request with `n` at least `fromTag` (to leave out a warm-up): the time
 * the chain between `frontPort` and `appPort` held the request and the
 * response, ms.
 */
export function chainTransit(file: string, frontPort: number, appPort: number, fromTag = 0): number[] {
  const packets = readPackets(file);
  const front = exchangesOf(flowsTo(packets, frontPort));
  const back = exchangesOf(flowsTo(packets, appPort));
  const added: number[] = [];
  for (const [n, outer] of front) {
    const inner = back.get(n);
    if (n < fromTag || inner === undefined) continue;
    if (outer.responseMs === undefined || inner.responseMs === undefined) continue;
    added.push(inner.requestMs - outer.requestMs + (outer.responseMs - inner.responseMs));
  }
  return added;
}
