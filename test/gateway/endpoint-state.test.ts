/** The gateway's passive-ejection backoff: base × 2^(consecutive ejections), capped, reset by a connect. */

import { describe, expect, it } from '@jest/globals';
import {
  EndpointPool,
  ejectEndpoint,
  endpointConnected,
  isEjected,
} from '../../eastwest-gateway/endpoint-state.js';

describe('endpoint ejection backoff', () => {
  const policy = { baseEjectionMs: 100, maxEjectionMs: 1000 };

  it('doubles each consecutive ejection up to the cap', () => {
    const endpoint = new EndpointPool().obtain('10.0.0.1', 15006, 'reviews-1');
    const durations = Array.from({ length: 6 }, () => ejectEndpoint(endpoint, 0, policy));
    expect(durations).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(endpoint.ejections).toBe(6);
  });

  it('holds the endpoint out until the ejection ends', () => {
    const endpoint = new EndpointPool().obtain('10.0.0.1', 15006, 'reviews-1');
    ejectEndpoint(endpoint, 5_000, policy);
    expect(isEjected(endpoint, 5_099)).toBe(true);
    expect(isEjected(endpoint, 5_100)).toBe(false);
  });

  it('restarts from the base after a successful connect', () => {
    const endpoint = new EndpointPool().obtain('10.0.0.1', 15006, 'reviews-1');
    ejectEndpoint(endpoint, 0, policy);
    ejectEndpoint(endpoint, 0, policy);
    endpointConnected(endpoint);
    expect(isEjected(endpoint, 0)).toBe(false);
    expect(ejectEndpoint(endpoint, 0, policy)).toBe(100);
  });

  it('keeps counting past thirty ejections without overflowing the cap', () => {
    const endpoint = new EndpointPool().obtain('10.0.0.1', 15006, 'reviews-1');
    endpoint.ejections = 1_000;
    expect(ejectEndpoint(endpoint, 0, policy)).toBe(1000);
  });
});
