import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { formatMeshSni, parseMeshSni } from './sni.js';

describe('mesh SNI', () => {
  it('round-trips', () => {
    const sni = { subset: 'v2', port: 9080, service: 'reviews', namespace: 'bookinfo' };
    expect(formatMeshSni(sni)).toBe('v2.9080.reviews.bookinfo.svc.mesh');
    expect(parseMeshSni('v2.9080.reviews.bookinfo.svc.mesh')).toEqual(sni);
    expect(parseMeshSni('_.80.web.default.svc.mesh')).toEqual({
      subset: '_',
      port: 80,
      service: 'web',
      namespace: 'default',
    });
  });

  it.each([
    'reviews.bookinfo.svc.cluster.local',
    'v1.80.web.default.svc.mesh.evil.com',
    'v1.0.web.default.svc.mesh',
    'v1.70000.web.default.svc.mesh',
    'v1.080.web.default.svc.mesh',
    'v1.80.Web.default.svc.mesh',
    'x.v1.80.web.default.svc.mesh',
    '.80.web.default.svc.mesh',
    'svc.mesh',
    '',
  ])('refuses %j', (name) => {
    expect(parseMeshSni(name)).toBeUndefined();
  });

  it('never throws and parses what it formats', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        parseMeshSni(s);
      }),
    );
    const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);
    fc.assert(
      fc.property(
        label,
        fc.integer({ min: 1, max: 65535 }),
        label,
        label,
        (subset, port, service, namespace) => {
          const sni = { subset, port, service, namespace };
          expect(parseMeshSni(formatMeshSni(sni))).toEqual(sni);
        },
      ),
    );
  });
});
