import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ErrorCodes, isMeshError } from '../errors.js';
import { formatSpiffeId, parseSpiffeId, principalOf, validateTrustDomain } from './spiffe.js';

function pkiErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMeshError(err, ErrorCodes.PKI)) return err.message;
    throw err;
  }
  throw new Error('expected a MeshError(PKI)');
}

describe('parseSpiffeId', () => {
  it('splits a canonical workload ID', () => {
    expect(parseSpiffeId('spiffe://cluster.local/ns/default/sa/frontend')).toEqual({
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'frontend',
    });
    expect(parseSpiffeId('spiffe://a_b-c.9/ns/Kube.System/sa/x_y-z').serviceAccount).toBe('x_y-z');
  });

  it.each([
    ['', /invalid SPIFFE ID/],
    ['spiffe://cluster.local', /invalid SPIFFE ID/],
    ['SPIFFE://cluster.local/ns/a/sa/b', /invalid SPIFFE ID/],
    ['https://cluster.local/ns/a/sa/b', /invalid SPIFFE ID/],
    ['spiffe://Cluster.local/ns/a/sa/b', /invalid trust domain/],
    ['spiffe://cluster.local:443/ns/a/sa/b', /invalid trust domain/],
    ['spiffe://user@cluster.local/ns/a/sa/b', /invalid trust domain/],
    ['spiffe:///ns/a/sa/b', /invalid trust domain/],
    ['spiffe://cluster.local/ns/a/sa/b/', /invalid SPIFFE ID/],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', /invalid service account/],
    ['spiffe://cluster.local/ns/a/sa/b#f', /invalid service account/],
    ['spiffe://cluster.local/ns/a%2Fb/sa/c', /invalid namespace/],
    ['spiffe://cluster.local/ns//sa/b', /invalid namespace/],
    ['spiffe://cluster.local/ns/../sa/b', /invalid namespace/],
    ['spiffe://cluster.local/ns/a/sa/.', /invalid service account/],
    ['spiffe://cluster.local/sa/b/ns/a', /invalid SPIFFE ID/],
    ['spiffe://cluster.local/ns/a/sa/b/extra', /invalid SPIFFE ID/],
    [' spiffe://cluster.local/ns/a/sa/b', /invalid SPIFFE ID/],
  ])('rejects %j', (uri, message) => {
    expect(pkiErrorOf(() => parseSpiffeId(uri))).toMatch(message);
  });

  it('rejects over-long IDs', () => {
    expect(pkiErrorOf(() => parseSpiffeId(`spiffe://td/ns/${'a'.repeat(2100)}/sa/b`))).toMatch(
      /longer than 2048/,
    );
    expect(pkiErrorOf(() => validateTrustDomain('a'.repeat(256)))).toMatch(/invalid trust domain/);
  });
});

describe('formatSpiffeId and principalOf', () => {
  it('formats and gives the Istio principal', () => {
    const id = formatSpiffeId({
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'frontend',
    });
    expect(id).toBe('spiffe://cluster.local/ns/default/sa/frontend');
    expect(principalOf(id)).toBe('cluster.local/ns/default/sa/frontend');
  });

  it('validates parts', () => {
    expect(
      pkiErrorOf(() => formatSpiffeId({ trustDomain: 'td', namespace: 'a/b', serviceAccount: 'c' })),
    ).toMatch(/invalid namespace "a\/b"/);
    expect(pkiErrorOf(() => principalOf('cluster.local/ns/default/sa/frontend'))).toMatch(
      /invalid SPIFFE ID/,
    );
  });
});

const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789._-'.split(''));
const segChar = fc.constantFrom(
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-'.split(''),
);
const trustDomain = fc.string({ unit: tdChar, minLength: 1, maxLength: 40 });
const segment = fc
  .string({ unit: segChar, minLength: 1, maxLength: 40 })
  .filter((s) => s !== '.' && s !== '..');

describe('properties', () => {
  it('formatSpiffeId(parseSpiffeId(x)) === x for every valid ID', () => {
    fc.assert(
      fc.property(trustDomain, segment, segment, (td, ns, sa) => {
        const uri = `spiffe://${td}/ns/${ns}/sa/${sa}`;
        const parsed = parseSpiffeId(uri);
        expect(parsed).toEqual({ trustDomain: td, namespace: ns, serviceAccount: sa });
        expect(formatSpiffeId(parsed)).toBe(uri);
      }),
    );
  });

  it('parseSpiffeId throws only MeshError(PKI), for arbitrary and near-valid input', () => {
    const nearValid = fc
      .tuple(fc.string(), fc.string(), fc.string())
      .map(([td, ns, sa]) => `spiffe://${td}/ns/${ns}/sa/${sa}`);
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), nearValid),
        (input) => {
          try {
            const parsed = parseSpiffeId(input);
            expect(formatSpiffeId(parsed)).toBe(input);
          } catch (err) {
            expect(isMeshError(err, ErrorCodes.PKI)).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
