/**
 * The proxy side's encoding of core/proto/mds.proto (ProxyMessage out,
 * ControlMessage in) on core/grpc/protobuf-wire, into and from the wire
 * shapes proto-loader gives the zone (mds-messages.ts). Field numbers are
 * the .proto's; test/zone-cp/zone-codecs.test.ts checks both ways against
 * proto-loader.
 */

import {
  ProtobufWireError,
  ProtobufWriter,
  lengthDelimited,
  readFields,
  utf8,
} from '../grpc/protobuf-wire.js';
import type { ControlMessageWire, ProxyMessageWire, SnapshotWire } from './mds-messages.js';

export function encodeProxyMessage(message: ProxyMessageWire): Buffer {
  const out = new ProtobufWriter();
  if (message.hello) {
    const h = message.hello;
    out.message(
      1,
      new ProtobufWriter()
        .string(1, h.proxy_id)
        .string(2, h.kind)
        .string(3, h.workload)
        .string(4, h.namespace)
        .string(5, h.software_version)
        .uint(6, h.protocol_version)
        .string(7, h.current_version)
        .finish(),
    );
  } else if (message.ack) {
    out.message(2, new ProtobufWriter().string(1, message.ack.version).string(2, message.ack.nonce).finish());
  } else if (message.nack) {
    const n = message.nack;
    out.message(3, new ProtobufWriter().string(1, n.version).string(2, n.nonce).string(3, n.error).finish());
  } else if (message.report) {
    out.message(4, new ProtobufWriter().bytes(1, message.report.json).finish());
  } else {
    throw new ProtobufWireError('a ProxyMessage needs one of hello, ack, nack or report');
  }
  return out.finish();
}

function decodeSnapshot(buf: Buffer): SnapshotWire {
  const snapshot: SnapshotWire = { version: '', nonce: '', type: '', json: Buffer.alloc(0) };
  for (const f of readFields(buf)) {
    if (f.field === 1) snapshot.version = utf8(f, 'Snapshot.version');
    else if (f.field === 2) snapshot.nonce = utf8(f, 'Snapshot.nonce');
    else if (f.field === 3) snapshot.type = utf8(f, 'Snapshot.type');
    else if (f.field === 4) snapshot.json = Buffer.from(lengthDelimited(f, 'Snapshot.json'));
  }
  return snapshot;
}

/** A ControlMessage; unknown fields (a newer zone) are skipped, as protobuf does. */
export function decodeControlMessage(buf: Buffer): ControlMessageWire {
  const message: ControlMessageWire = {};
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      message.message = 'snapshot';
      message.snapshot = decodeSnapshot(lengthDelimited(f, 'ControlMessage.snapshot'));
    }
  }
  return message;
}
