import { describe, expect, it } from '@jest/globals';
import { ErrorCodes, isMeshError } from './errors.js';
import { FactoryRegistry } from './factory-registry.js';

describe('FactoryRegistry', () => {
  it('builds what was registered under a name, the latest registration winning', () => {
    const registry = new FactoryRegistry<() => string>('colour', ErrorCodes.CONFIG);
    registry.register('red', () => 'r');
    registry.register('blue', () => 'b');
    registry.register('red', () => 'R');
    expect(registry.require('red')()).toBe('R');
    expect(registry.get('blue')?.()).toBe('b');
    expect(registry.get('green')).toBeUndefined();
    expect(registry.names()).toEqual(['blue', 'red']);
  });

  it('refuses an unknown name with its code, naming the name and the known ones', () => {
    const registry = new FactoryRegistry<() => string>('colour', ErrorCodes.INVALID_ARGUMENT);
    registry.register('red', () => 'r');
    registry.register('blue', () => 'b');
    let caught: unknown;
    try {
      registry.require('Red');
    } catch (err) {
      caught = err;
    }
    expect(isMeshError(caught, ErrorCodes.INVALID_ARGUMENT)).toBe(true);
    expect((caught as Error).message).toBe('unknown colour "Red"; known: blue, red');
    expect((caught as { details?: unknown }).details).toEqual({ name: 'Red', known: ['blue', 'red'] });
  });
});
