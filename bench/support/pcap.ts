/**
 * A reader of loopback packet captures (`tcpdump -i lo -w`, classic pcap
 * format, micro- or nanosecond timestamps) for the benchmarks: IPv4 TCP
 * segments with kernel timestamps, grouped into flows by server port, each
 * segment with its stream offset and the first bytes of its payload (as
 * many as the capture's snapshot length kept).
 */

import { readFileSync } from 'node:fs';

export interface Packet {
  /** Milliseconds since the capture's first second. */
  ms: number;
  sourcePort: number;
  destPort: number;
  seq: number;
  payload: number;
  /** The captured start of the payload. */
  head: Buffer;
  synOnly: boolean;
  syn: boolean;
}

export interface Segment {
  ms: number;
  /** Stream offset of the segment's first byte. */
  offset: number;
  length: number;
  head: Buffer;
}

export interface Flow {
  /** Initial sequence + 1 per direction, from the SYN and SYN-ACK (or the first payload seen). */
  isn: { up?: number; down?: number };
  /** Client to server. */
  up: Segment[];
  /** Server to client. */
  down: Segment[];
}

const LINK_HEADER_BYTES: Record<number, number> = { 1: 14, 113: 16, 276: 20 };

export function readPackets(file: string): Packet[] {
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
    const record = at + 16;
    const ip = record + linkHeader;
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
      head: b.subarray(Math.min(tcp + tcpHeader, at), at),
      syn: (flags & 2) !== 0,
      synOnly: (flags & 2) !== 0 && (flags & 16) === 0,
    });
  }
  return packets;
}

/** Flows whose server side is `port`; a SYN on a reused client port starts a new one. */
export function flowsTo(packets: Packet[], port: number): Flow[] {
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
      flow[direction].push({ ms: p.ms, offset: (p.seq - isn) >>> 0, length: p.payload, head: p.head });
    }
  }
  return flows;
}
