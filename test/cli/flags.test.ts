import { describe, expect, it } from '@jest/globals';
import { InvalidArgumentError } from 'commander';
import { parseByteSize, parseHost, parsePort, parseStoreUrl, parseTrustDomain } from '../../cli/flags.js';

describe('flag parsers', () => {
  it('parsePort accepts 0-65535 only', () => {
    expect(parsePort('0')).toBe(0);
    expect(parsePort('5681')).toBe(5681);
    expect(parsePort('65535')).toBe(65535);
    for (const bad of ['abc', '70000', '65536', '-1', '1.5', '', '80x']) {
      expect(() => parsePort(bad)).toThrow(InvalidArgumentError);
    }
  });

  it('parseByteSize understands units', () => {
    expect(parseByteSize('4194304')).toBe(4194304);
    expect(parseByteSize('4Mi')).toBe(4 * 1024 * 1024);
    expect(parseByteSize('512KiB')).toBe(512 * 1024);
    expect(parseByteSize('1k')).toBe(1000);
    for (const bad of ['0', 'lots', '4Xi', '-1', '1.5Mi'])
      expect(() => parseByteSize(bad)).toThrow(InvalidArgumentError);
  });

  it('parseStoreUrl accepts the store schemes', () => {
    for (const ok of ['memory://', 'file:///var/lib/meshfed', 'redis://127.0.0.1:6379/0']) {
      expect(parseStoreUrl(ok)).toBe(ok);
    }
    expect(() => parseStoreUrl('ftp://x')).toThrow(/unsupported store scheme/);
    expect(() => parseStoreUrl('not a url')).toThrow(InvalidArgumentError);
  });

  it('parseHost and parseTrustDomain refuse malformed names', () => {
    expect(parseHost(' 0.0.0.0 ')).toBe('0.0.0.0');
    expect(() => parseHost('')).toThrow(InvalidArgumentError);
    expect(() => parseHost('http://x')).toThrow(InvalidArgumentError);
    expect(parseTrustDomain('Example.ORG')).toBe('example.org');
    expect(() => parseTrustDomain('spiffe://x')).toThrow(InvalidArgumentError);
  });
});
