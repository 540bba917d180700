import { describe, expect, it } from '@jest/globals';
import {
  formatAge,
  formatResourceTable,
  formatTable,
  kindRef,
  objectRef,
  sortObjects,
} from '../../cli/output-table.js';

const NOW = Date.parse('2026-01-10T12:00:00Z');
const ago = (ms: number): string => new Date(NOW - ms).toISOString();

describe('formatAge', () => {
  it.each([
    [0, '0s'],
    [45_000, '45s'],
    [119_000, '119s'],
    [5 * 60_000 + 30_000, '5m30s'],
    [5 * 60_000, '5m'],
    [45 * 60_000, '45m'],
    [5 * 3_600_000 + 30 * 60_000, '5h30m'],
    [40 * 3_600_000, '40h'],
    [3 * 86_400_000 + 5 * 3_600_000, '3d5h'],
    [200 * 86_400_000, '200d'],
    [3 * 365 * 86_400_000, '3y'],
    [-5000, '0s'],
  ])('%d ms is %s', (ms, expected) => {
    expect(formatAge(ms)).toBe(expected);
  });
});

describe('formatTable', () => {
  it('pads every column but the last to its widest cell, three spaces apart', () => {
    expect(
      formatTable(
        ['NAME', 'AGE'],
        [
          ['a-long-name', '5s'],
          ['b', '10m'],
        ],
      ),
    ).toBe('NAME          AGE\na-long-name   5s\nb             10m\n');
  });
});

describe('formatResourceTable', () => {
  it('shows kind-specific columns and NAMESPACE with -A', () => {
    const table = formatResourceTable(
      [
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'DestinationRule',
          metadata: { name: 'reviews', namespace: 'shop', creationTimestamp: ago(90_000) },
          spec: { host: 'reviews.shop.svc', subsets: [{ name: 'v1' }, { name: 'v2' }] },
        },
      ],
      { kind: 'DestinationRule', withNamespace: true, now: NOW },
    );
    expect(table).toBe(
      'NAMESPACE   NAME      HOST               SUBSETS   AGE\nshop        reviews   reviews.shop.svc   v1,v2     90s\n',
    );
  });

  it.each([
    ['PeerAuthentication', { mtls: { mode: 'STRICT' } }, 'MODE', 'STRICT'],
    ['PeerAuthentication', {}, 'MODE', 'UNSET'],
    ['AuthorizationPolicy', {}, 'ACTION', 'ALLOW'],
    ['AuthorizationPolicy', { action: 'DENY' }, 'ACTION', 'DENY'],
    ['Zone', {}, 'ENABLED', 'true'],
    ['Zone', { enabled: false }, 'ENABLED', 'false'],
    ['Mesh', { mtls: { mode: 'STRICT' } }, 'MTLS', 'STRICT'],
    ['VirtualService', { hosts: ['a', 'b'] }, 'HOSTS', 'a,b'],
  ])('%s with spec %j shows %s %s', (kind, spec, header, value) => {
    const table = formatResourceTable(
      [{ kind, metadata: { name: 'x', creationTimestamp: ago(1000) }, spec }],
      {
        kind,
        withNamespace: false,
        now: NOW,
      },
    );
    const [head, row] = table.trim().split('\n');
    const column = head?.split(/\s{2,}/).indexOf(header) ?? -1;
    expect(column).toBeGreaterThan(0);
    expect(row?.split(/\s{2,}/)[column]).toBe(value);
  });

  it('says <unknown> for an object without a creation time', () => {
    expect(formatResourceTable([{ metadata: { name: 'x' } }], { kind: 'Other', withNamespace: false })).toBe(
      'NAME   AGE\nx      <unknown>\n',
    );
  });
});

describe('references and order', () => {
  it('names objects like kubectl', () => {
    expect(kindRef('VirtualService', 'networking.istio.io/v1')).toBe('virtualservice.networking.istio.io');
    expect(kindRef('List', 'v1')).toBe('list');
    expect(
      objectRef({ kind: 'Mesh', apiVersion: 'meshfed.io/v1alpha1', metadata: { name: 'default' } }),
    ).toBe('mesh.meshfed.io/default');
  });

  it('sorts by namespace, then name', () => {
    const names = sortObjects([
      { metadata: { namespace: 'b', name: 'a' } },
      { metadata: { namespace: 'a', name: 'z' } },
      { metadata: { namespace: 'a', name: 'c' } },
    ]).map(
      (o) =>
        `${String((o.metadata as { namespace: string }).namespace)}/${String((o.metadata as { name: string }).name)}`,
    );
    expect(names).toEqual(['a/c', 'a/z', 'b/a']);
  });
});
