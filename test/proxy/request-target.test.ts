import { describe, expect, it } from '@jest/globals';
import {
  inboundRequestTarget,
  removeDotSegments,
  splitRequestTarget,
} from '../../proxy/http/request-target.js';

describe('request target', () => {
  it('splits absolute-form into authority and origin-form, and leaves origin-form alone', () => {
    expect(splitRequestTarget('/a?b')).toEqual({ path: '/a?b', authority: undefined });
    expect(splitRequestTarget('http://h:8080/a/b?c=d')).toEqual({ path: '/a/b?c=d', authority: 'h:8080' });
    expect(splitRequestTarget('HTTPS://h?x')).toEqual({ path: '/?x', authority: 'h' });
    expect(splitRequestTarget('http://h')).toEqual({ path: '/', authority: 'h' });
    for (const bad of ['', 'a/b', 'ftp://h/a', 'http:///a', '*'])
      expect(splitRequestTarget(bad)).toBeUndefined();
  });

  it('removes dot segments as RFC 3986 5.2.4 does, %2e counting as a dot, the query untouched', () => {
    const cases: Array<[string, string]> = [
      ['/a/b/c', '/a/b/c'],
      ['/a/./b', '/a/b'],
      ['/a/../b', '/b'],
      ['/a/b/..', '/a/'],
      ['/a/b/.', '/a/b/'],
      ['/..', '/'],
      ['/../../x', '/x'],
      ['/a/%2E%2e/b', '/b'],
      ['/a/.%2e/b', '/b'],
      ['/a/%2e/b', '/a/b'],
      ['/a/..b/c', '/a/..b/c'],
      ['/a/../b?x=/../y', '/b?x=/../y'],
      ['/a.b/c%20d', '/a.b/c%20d'],
      ['//a//../b', '//a/b'],
    ];
    for (const [path, normalized] of cases)
      expect({ path, out: removeDotSegments(path) }).toEqual({ path, out: normalized });
  });

  it('takes * for OPTIONS only, and refuses what is not a path', () => {
    expect(inboundRequestTarget('*', 'OPTIONS')).toEqual({ path: '*', authority: undefined });
    expect(inboundRequestTarget('*', 'GET')).toBeUndefined();
    expect(inboundRequestTarget('admin', 'GET')).toBeUndefined();
    expect(inboundRequestTarget('http://h/x/../admin', 'GET')).toEqual({ path: '/admin', authority: 'h' });
    const same = '/plain/path';
    expect(inboundRequestTarget(same, 'GET')?.path).toBe(same);
  });
});
