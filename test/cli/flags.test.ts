import { describe, expect, it } from '@jest/globals';
import { InvalidArgumentError } from 'commander';
import {
  parseAtLeastSecondMs,
  parseByteSize,
  parseDurationMs,
  parseDurationSeconds,
  parseHost,
  parseHostPort,
  parsePort,
  parseStoreUrl,
  parseTrustDomain,
} from '../../cli/flags.js';

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

  it('the duration parsers give whole milliseconds or seconds and refuse what is not a duration', () => {
    expect(parseDurationMs(' 1h30m ')).toBe(5_400_000);
    expect(parseDurationMs('250us')).toBe(0);
    expect(parseDurationMs('1.5ms')).toBe(2);
    expect(parseAtLeastSecondMs('1500ms')).toBe(1500);
    expect(parseDurationSeconds('90m')).toBe(5400);
    expect(parseDurationSeconds('1999ms')).toBe(1);
    for (const parse of [parseDurationMs, parseAtLeastSecondMs, parseDurationSeconds]) {
      for (const bad of ['', 'soon', '10', '-5s', '5 s']) {
        expect(() => parse(bad)).toThrow(/expected a duration such as 500ms/);
      }
    }
    for (const parse of [parseAtLeastSecondMs, parseDurationSeconds]) {
      expect(() => parse('999ms')).toThrow(/at least 1s/);
      expect(() => parse('0')).toThrow(InvalidArgumentError);
    }
  });

  it('parseHostPort takes a dialable host:port, IPv6 in brackets', () => {
    expect(parseHostPort(' gw.zone-b.example:15443 ')).toBe('gw.zone-b.example:15443');
    expect(parseHostPort('[fd00::1]:443')).toBe('[fd00::1]:443');
    for (const bad of ['gw', 'gw:', ':443', 'fd00::1:443', 'http://gw:443', 'g w:1']) {
      expect(() => parseHostPort(bad)).toThrow(/expected host:port/);
    }
  });
});
