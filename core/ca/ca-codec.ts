/**
 * The client side's encoding of core/proto/ca.proto (SignRequest out,
 * SignResponse in) on core/grpc/protobuf-wire, in the shapes proto-loader
 * gives the zone CA (keepCase, 64-bit integers as strings). Field numbers
 * are the .proto's; test/zone-cp/zone-codecs.test.ts checks both ways
 * against proto-loader.
 */

import { ProtobufWriter, readFields, utf8, varint } from '../grpc/protobuf-wire.js';

export interface SignRequestWire {
  csr_pem: string;
  ttl_seconds: number;
}

/** The wire shape of SignResponse (proto-loader, keepCase, longs as strings). */
export interface SignResponseWire {
  cert_chain_pem: string[];
  trust_bundle_pem: string[];
  spiffe_id: string;
  not_after: string;
  serial: string;
}

export function encodeSignRequest(request: SignRequestWire): Buffer {
  return new ProtobufWriter().string(1, request.csr_pem).uint(2, request.ttl_seconds).finish();
}

/** A SignResponse; unknown fields (a newer zone) are skipped, as protobuf does. */
export function decodeSignResponse(buf: Buffer): SignResponseWire {
  const response: SignResponseWire = {
    cert_chain_pem: [],
    trust_bundle_pem: [],
    spiffe_id: '',
    not_after: '0',
    serial: '',
  };
  for (const f of readFields(buf)) {
    if (f.field === 1) response.cert_chain_pem.push(utf8(f, 'SignResponse.cert_chain_pem'));
    else if (f.field === 2) response.trust_bundle_pem.push(utf8(f, 'SignResponse.trust_bundle_pem'));
    else if (f.field === 3) response.spiffe_id = utf8(f, 'SignResponse.spiffe_id');
    else if (f.field === 4)
      response.not_after = String(varint(f, 'SignResponse.not_after') & 0xffffffffffffffffn);
    else if (f.field === 5) response.serial = utf8(f, 'SignResponse.serial');
  }
  return response;
}
