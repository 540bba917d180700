/**
 * Time a TCP middlebox adds, read from a packet capture of loopback
 * (`tcpdump -i lo -s 128 --time-stamp-precision=nano -w file`): kernel
 * timestamps of the same bytes entering and leaving the middlebox, so
 * neither the client's nor the backend's own jitter is in the figure.
 *
 * A TLS connection to its first response byte crosses the middlebox four
 * times: the ClientHello (which, for a middlebox that connects per client,
 * includes its connect to the backend), the server's flight, the client's
 * Finished with the request, and the response. Per connection this sums the
 * time from the flight's last byte arriving on one side to that byte leaving
 * on the other (for the response, its first segment). Flights are runs of
 * segments from one side, so this holds for exchanges where the server
 * says nothing between the client's Finished and its request (the resumed
 * sessions of bench:gateway); a NewSessionTicket sent in that gap would be
 * taken for the response. A front flow (client ↔
 * middlebox) is paired with the first back flow (middlebox ↔ backend) to
 * carry bytes upstream after the client's first bytes arrived: connections
 * must be made one at a time. Back flows that never carry a byte (a spare
 * connection opened ahead of demand and not used) pair with nothing.
 */

import { flowsTo, readPackets, type Flow, type Segment } from './pcap.js';

export interface Transit {
  /** Per connection, the four crossings added up, ms. */
  perConnection: number[];
  /** Per crossing (hello, server flight, client flight, response), ms. */
  perCrossing: [number[], number[], number[], number[]];
}

/** When the byte just before `end` left on the other side, or undefined if it never did. */
function leftAt(segments: Segment[], end: number): number | undefined {
  return segments.find((s) => s.offset + s.length >= end)?.ms;
}

/** Crossing times of one connection, or undefined when it did not get as far as a response. */
function crossings(front: Flow, back: Flow): number[] | undefined {
  // What reached the middlebox, in time order: from the client (front, up) and from the backend (back, down).
  const arrivals = [
    ...front.up.map((s) => ({ ...s, fromClient: true })),
    ...back.down.map((s) => ({ ...s, fromClient: false })),
  ].sort((x, y) => x.ms - y.ms);
  // Flights: runs of arrivals from one side.
  const flights: Array<Array<(typeof arrivals)[number]>> = [];
  for (const a of arrivals) {
    const last = flights[flights.length - 1];
    if (last !== undefined && last[0]?.fromClient === a.fromClient) last.push(a);
    else flights.push([a]);
  }
  if (flights.length < 4) return undefined;
  const times: number[] = [];
  for (let k = 0; k < 4; k++) {
    const flight = flights[k] ?? [];
    const segment = k === 3 ? flight[0] : flight[flight.length - 1];
    if (segment === undefined) return undefined;
    const out = leftAt(segment.fromClient ? back.up : front.down, segment.offset + segment.length);
    if (out === undefined) return undefined;
    times.push(out - segment.ms);
  }
  return times;
}

/** Transit times through the middlebox listening on `frontPort` whose backend listens on `backPort`. */
export function middleboxTransit(file: string, frontPort: number, backPort: number): Transit {
  const packets = readPackets(file);
  const firstUp = (flow: Flow): number => flow.up[0]?.ms ?? Infinity;
  const byFirstUp = (x: Flow, y: Flow): number => firstUp(x) - firstUp(y);
  const fronts = flowsTo(packets, frontPort)
    .filter((f) => f.up.length > 0)
    .sort(byFirstUp);
  const backs = flowsTo(packets, backPort)
    .filter((f) => f.up.length > 0)
    .sort(byFirstUp);
  const result: Transit = { perConnection: [], perCrossing: [[], [], [], []] };
  let b = 0;
  for (const front of fronts) {
    while (b < backs.length && firstUp(backs[b] as Flow) < firstUp(front)) b++;
    const back = backs[b];
    if (back === undefined) break;
    const times = crossings(front, back);
    if (times === undefined) continue;
    result.perConnection.push(times.reduce((a, b) => a + b, 0));
    times.forEach((t, k) => result.perCrossing[k as 0 | 1 | 2 | 3].push(t));
  }
  return result;
}
