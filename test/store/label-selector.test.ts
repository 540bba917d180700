import { describe, expect, it } from '@jest/globals';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { matchLabels, parseLabelSelector } from '../../core/store/label-selector.js';

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front', 'example.com/team': 'mesh' };

  it.each([
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app = web', true],
    ['app=api', false],
    ['app!=api', true],
    ['app!=web', false],
    ['missing!=x', true],
    ['app', true],
    ['missing', false],
    ['!missing', true],
    ['!app', false],
    ['app in (api, web)', true],
    ['app in (api)', false],
    ['missing in (x)', false],
    ['app notin (api)', true],
    ['app notin (api,web)', false],
    ['missing notin (x)', true],
    ['app=web,tier=front', true],
    ['app=web,tier=back', false],
    ['example.com/team=mesh, app in (web,api), !missing', true],
    ['tier=', false],
  ])('%j matches=%s', (selector, expected) => {
    expect(matchLabels(selector, labels)).toBe(expected);
  });

  it('matches an object without labels like an empty label set', () => {
    expect(parseLabelSelector('!app').matches(undefined)).toBe(true);
    expect(parseLabelSelector('app').matches(undefined)).toBe(false);
    expect(parseLabelSelector('app notin (x)').matches(undefined)).toBe(true);
  });

  it('exposes the parsed requirements', () => {
    expect(parseLabelSelector('a=b, c notin (d,e), !f').requirements).toEqual([
      { key: 'a', operator: 'equals', values: ['b'] },
      { key: 'c', operator: 'notIn', values: ['d', 'e'] },
      { key: 'f', operator: 'doesNotExist', values: [] },
    ]);
  });

  it.each([
    'app in (web',
    'app in web)',
    'a=b,,c=d',
    '=web',
    'app=we b',
    'app in ()',
    '-bad=x',
    'a=b=c',
    '!',
  ])('rejects %j with INVALID_ARGUMENT naming the selector', (selector) => {
    let caught: unknown;
    try {
      parseLabelSelector(selector);
    } catch (err) {
      caught = err;
    }
    expect(isMeshError(caught, ErrorCodes.INVALID_ARGUMENT)).toBe(true);
    expect((caught as Error).message).toContain(`"${selector.trim()}"`);
  });
});
