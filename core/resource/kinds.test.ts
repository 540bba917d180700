import { describe, expect, it } from '@jest/globals';
import { ErrorCodes, isMeshError } from '../errors.js';
import { allKinds, findKind, resolveKind } from './kinds.js';

describe('kind registry', () => {
  it('knows the Istio kinds and meshfed own kinds', () => {
    expect(allKinds().map((k) => k.kind)).toEqual([
      'VirtualService',
      'DestinationRule',
      'ServiceEntry',
      'WorkloadEntry',
      'WorkloadGroup',
      'PeerAuthentication',
      'AuthorizationPolicy',
      'Mesh',
      'Zone',
    ]);
  });

  it.each([
    ['vs', 'VirtualService'],
    ['virtualservice', 'VirtualService'],
    ['VirtualServices', 'VirtualService'],
    ['dr', 'DestinationRule'],
    ['pa', 'PeerAuthentication'],
    ['peerauthentication', 'PeerAuthentication'],
    ['ap', 'AuthorizationPolicy'],
    ['authorizationpolicy', 'AuthorizationPolicy'],
    ['authorizationpolicies', 'AuthorizationPolicy'],
    ['se', 'ServiceEntry'],
    ['serviceentries', 'ServiceEntry'],
    ['we', 'WorkloadEntry'],
    ['wg', 'WorkloadGroup'],
    ['mesh', 'Mesh'],
    ['meshes', 'Mesh'],
    ['zone', 'Zone'],
    ['ZONES', 'Zone'],
  ])('findKind(%j) is %s', (name, kind) => {
    expect(findKind(name)?.kind).toBe(kind);
  });

  it('finds nothing for an unknown name', () => {
    expect(findKind('gateway')).toBeUndefined();
    expect(findKind('')).toBeUndefined();
  });

  it('fills every field consistently', () => {
    for (const k of allKinds()) {
      expect(k.plural).toBe(k.plural.toLowerCase());
      expect(k.singular).toBe(k.kind.toLowerCase());
      expect(k.crdGroup.endsWith('meshfed.io')).toBe(true);
      expect(k.versions).toContain(k.storageVersion);
      expect(k.groups.length).toBeGreaterThan(0);
      expect(k.specSchema.type).toBe('object');
      expect(k.namespaced).toBe(k.kind !== 'Mesh' && k.kind !== 'Zone');
    }
  });

  it('resolves both API groups and every accepted version', () => {
    expect(resolveKind('networking.istio.io/v1alpha3', 'VirtualService').kind).toBe('VirtualService');
    expect(resolveKind('networking.meshfed.io/v1', 'DestinationRule').kind).toBe('DestinationRule');
    expect(resolveKind('security.istio.io/v1beta1', 'AuthorizationPolicy').kind).toBe('AuthorizationPolicy');
    expect(resolveKind('meshfed.io/v1alpha1', 'Mesh').kind).toBe('Mesh');
  });

  it.each([
    ['networking.istio.io/v1', 'Gateway', 'unknown kind "Gateway"'],
    ['networking.istio.io/v1', 'virtualservice', 'did you mean VirtualService'],
    ['security.istio.io/v1alpha3', 'PeerAuthentication', 'security.istio.io or security.meshfed.io'],
    ['networking.istio.io/v2', 'VirtualService', 'versions v1alpha3, v1beta1, v1'],
    ['v1', 'Zone', 'meshfed.io'],
  ])('refuses %s %s', (apiVersion, kind, hint) => {
    let caught: unknown;
    try {
      resolveKind(apiVersion, kind);
    } catch (err) {
      caught = err;
    }
    expect(isMeshError(caught, ErrorCodes.UNKNOWN_KIND)).toBe(true);
    expect((caught as Error).message).toContain(hint);
    expect((caught as Error).message).toContain(apiVersion);
  });
});
