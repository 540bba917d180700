/**
 * A bare MDS stream for protocol tests: send exactly the messages a test
 * wants (including wrong ones) and collect what the zone answers.
 */

import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { loadService } from '../../core/ca/grpc-service.js';
import type { ZoneCredential } from '../../core/ca/zone-channel.js';
import { MDS_SERVICE, type ControlMessageWire, type ProxyMessageWire } from '../../core/mds/mds-messages.js';
import { grpcJsZoneCredentials, grpcJsZoneMetadata, grpcJsZoneOptions } from '../common/zone-grpc-js.js';
import { waitFor } from '../common/wait.js';

export interface RawStream {
  send(message: ProxyMessageWire): void;
  snapshots: Array<{ version: string; nonce: string; type: string; json: unknown }>;
  /** Resolves with the status the zone ended the stream with. */
  ended: Promise<{ code: number; details: string }>;
  /** Waits for the n-th snapshot (1-based). */
  snapshot(n: number): Promise<{ version: string; nonce: string; type: string; json: unknown }>;
  close(): void;
}

export function openRawStream(address: string, caPem: string, credential?: ZoneCredential): RawStream {
  const { Client } = loadService('mds.proto', MDS_SERVICE);
  const client = new Client(address, grpcJsZoneCredentials(caPem, credential), grpcJsZoneOptions());
  const call = (
    client as unknown as { Stream: (md: unknown) => ClientDuplexStream<ProxyMessageWire, ControlMessageWire> }
  ).Stream.call(client, grpcJsZoneMetadata(credential));
  const snapshots: RawStream['snapshots'] = [];
  call.on('data', (message: ControlMessageWire) => {
    const s = message.snapshot;
    if (s)
      snapshots.push({
        version: s.version,
        nonce: s.nonce,
        type: s.type,
        json: JSON.parse(Buffer.from(s.json).toString('utf8')),
      });
  });
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on('error', (err: ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on('status', (s: { code: number; details: string }) =>
      resolve({ code: s.code, details: s.details }),
    );
  });
  return {
    send: (message) => call.write(message),
    snapshots,
    ended,
    snapshot: (n) => waitFor(() => snapshots[n - 1], { what: `snapshot #${n}` }),
    close() {
      call.cancel();
      client.close();
    },
  };
}

export function hello(
  fields: Partial<{
    proxy_id: string;
    kind: string;
    workload: string;
    namespace: string;
    protocol_version: number;
    current_version: string;
  }>,
): ProxyMessageWire {
  return {
    hello: {
      proxy_id: 'raw-1',
      kind: 'sidecar',
      workload: '',
      namespace: '',
      software_version: 'raw',
      protocol_version: 1,
      current_version: '',
      ...fields,
    },
  };
}
