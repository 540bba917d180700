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

import { readFileSync } from 'node:fs';

interface Packet {
  ms: number;
  sourcePort: number;
  destPort: number;
  seq: number;
  payload: number;
  synOnly: boolean;
  syn: boolean;
}

interface Segment {
  ms: number;
  /** Stream offset of the segment's first byte. */
  offset: number;
  length: number;
}

interface Flow {
  /** Initial sequence + 1 per direction, from the SYN and SYN-ACK. */
  isn: { up?: number; down?: number };
  up: Segment[];
  down: Segment[];
}

export interface Transit {
  /** Per connection, the four crossings added up, ms. */
  perConnection: number[];
  /** Per crossing (hello, server flight, client flight, response), ms. */
  perCrossing: [number[], number[], number[], number[]];
}

const LINK_HEADER_BYTES: Record<number, number> = { 1: 14, 113: 16, 276: 20 };

function readPackets(file: string): Packet[] {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian pcap file`);
  const nano = magic === 0xa1b23c4d;
  const linkHeader = LINK_HEADER_BYTES[b.readUInt32LE(20)];
  if (linkHeader === undefined) throw new Error(`${file}: unsupported link type ${b.readUInt32LE(20)}`);
  const packets: Packet[] = [];
  // Seconds since the first packet: epoch milliseconds in a double would round sub-microsecond steps.
  const epochSeconds = b.length >= 40 ? b.readUInt32LE(24) : 0;
  for (let at = 24; at + 16 <= b.length;) {
    const ms = (b.readUInt32LE(at) - epochSeconds) * 1e3 + b.readUInt32LE(at + 4) / (nano ? 1e6 : 1e3);
    const captured = b.readUInt32LE(at + 8);
    const ip = at + 16 + linkHeader;
    at += 16 + captured;
    // A record cut short (the capture was stopped mid-write) ends the file.
    if (at > b.length) break;
    if (b[ip] === undefined || b[ip] >> 4 !== 4 || b[ip + 9] !== 6) continue; // IPv4 TCP only
    const ipHeader = (b[ip] & 15) * 4;
    const tcp = ip + ipHeader;
    const tcpHeader = ((b[tcp + 12] ?? 0) >> 4) * 4;
    const flags = b[tcp + 13] ?? 0;
    packets.push({
      ms,
      sourcePort: b.readUInt16BE(tcp),
      destPort: b.readUInt16BE(tcp + 2),
      seq: b.readUInt32BE(tcp + 4),
      payload: b.readUInt16BE(ip + 2) - ipHeader - tcpHeader,
      syn: (flags & 2) !== 0,
      synOnly: (flags & 2) !== 0 && (flags & 16) === 0,
    });
  }
  return packets;
}

/** Flows whose server side is `port`; a SYN on a reused client port starts a new one. */
function flowsTo(packets: Packet[], port: number): Flow[] {
  const open = new Map<number, Flow>();
  const flows: Flow[] = [];
  for (const p of packets) {
    const up = p.destPort === port;
    if (!up && p.sourcePort !== port) continue;
    const clientPort = up ? p.sourcePort : p.destPort;
    let flow = open.get(clientPort);
    if (flow === undefined || (up && p.synOnly)) {
      flow = { isn: {}, up: [], down: [] };
      open.set(clientPort, flow);
      flows.push(flow);
    }
    const direction = up ? 'up' : 'down';
    if (p.syn) {
      flow.isn[direction] = (p.seq + 1) >>> 0;
      continue;
    }
    // A flow whose handshake predates the capture: count offsets from its first payload.
    if (p.payload > 0 && flow.isn[direction] === undefined) flow.isn[direction] = p.seq;
    const isn = flow.isn[direction];
    if (p.payload > 0 && isn !== undefined) {
      flow[direction].push({ ms: p.ms, offset: (p.seq - isn) >>> 0, length: p.payload });
    }
  }
  return flows;
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
