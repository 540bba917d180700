/**
 * The token kinds a zone issues on `POST /api/v1/tokens`. A proxy token is
 * bound to this zone and to one workload, and carries the identity its
 * certificate will get:
 *   {"kind":"proxy","name":"frontend","workload":"frontend","namespace":"demo","serviceAccount":"frontend"}
 * `role: "gateway"` makes it an east-west gateway's token (MDS gateway
 * stream only).
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { TokenKindSpec } from '../../core/api/token-routes.js';

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const ACCOUNT = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function proxyTokenKind(zone: string): TokenKindSpec {
  return {
    kind: 'proxy',
    fields: ['workload', 'namespace', 'serviceAccount', 'zone', 'role'],
    claims(fields) {
      const text = (field: string): string | undefined => {
        const value = fields[field];
        if (value === undefined) return undefined;
        if (typeof value !== 'string') {
          throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field} must be a string`, { field });
        }
        return value;
      };
      const zoneField = text('zone');
      if (zoneField !== undefined && zoneField !== zone) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          `this is zone ${zone}: it cannot issue a proxy token for zone ${zoneField}`,
          { field: 'zone' },
        );
      }
      const role = text('role');
      if (role !== undefined && role !== 'sidecar' && role !== 'gateway') {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'role must be "sidecar" or "gateway"', {
          field: 'role',
        });
      }
      const workload = text('workload');
      if (workload === undefined || !NAME.test(workload)) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          'workload is required: the DNS-1123 name of the workload (Pod or WorkloadEntry) the proxy serves',
          { field: 'workload' },
        );
      }
      const namespace = text('namespace') ?? 'default';
      if (!NAME.test(namespace)) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `namespace "${namespace}" is not a DNS-1123 name`, {
          field: 'namespace',
        });
      }
      const serviceAccount = text('serviceAccount') ?? 'default';
      if (!ACCOUNT.test(serviceAccount)) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          `serviceAccount "${serviceAccount}" is not a DNS-1123 name`,
          {
            field: 'serviceAccount',
          },
        );
      }
      return {
        zone,
        ext: { workload, namespace, serviceAccount, ...(role === 'gateway' ? { role } : {}) },
      };
    },
  };
}
