import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  DEFAULT_SERVER,
  loadClientConfig,
  parseClientConfig,
  redactClientConfig,
  resolveConnection,
  saveClientConfig,
  upsertContext,
  type ClientConfig,
} from '../../cli/client-config.js';
import { isMeshError } from '../../core/errors.js';

describe('client config', () => {
  let dir: string;
  let tokenFile: string;
  let config: ClientConfig;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'meshfed-client-config-'));
    tokenFile = path.join(dir, 'token');
    await writeFile(tokenFile, 'from-file\n');
    config = {
      currentContext: 'ctx',
      contexts: [
        { name: 'ctx', server: 'http://ctx:1', token: 'from-context', namespace: 'shop' },
        { name: 'other', server: 'http://other:2', tokenFile },
      ],
    };
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('resolves each setting from flags, then environment, then the context', async () => {
    const env = { MESHFED_CONFIG: path.join(dir, 'unused') };
    expect(await resolveConnection({}, { env, config })).toEqual({
      server: 'http://ctx:1',
      token: 'from-context',
      namespace: 'shop',
      contextName: 'ctx',
    });
    const fromEnv = await resolveConnection(
      {},
      { env: { ...env, MESHFED_SERVER: 'http://env:3', MESHFED_TOKEN_FILE: tokenFile }, config },
    );
    expect([fromEnv.server, fromEnv.token]).toEqual(['http://env:3', 'from-file']);
    const fromFlags = await resolveConnection(
      { server: 'http://flag:4', token: 'from-flag' },
      { env: { ...env, MESHFED_SERVER: 'http://env:3', MESHFED_TOKEN: 'from-env' }, config },
    );
    expect([fromFlags.server, fromFlags.token]).toEqual(['http://flag:4', 'from-flag']);
    const other = await resolveConnection({ context: 'other' }, { env, config });
    expect([other.server, other.token]).toEqual(['http://other:2', 'from-file']);
  });

  it('defaults the server and asks for a token when none is configured', async () => {
    const env = { MESHFED_CONFIG: path.join(dir, 'absent', 'config') };
    const anonymous = await resolveConnection({}, { env, requireToken: false });
    expect(anonymous.server).toBe(DEFAULT_SERVER);
    await expect(resolveConnection({}, { env })).rejects.toThrow(
      /no API token: pass --token or --token-file/,
    );
    await expect(resolveConnection({ context: 'nope' }, { env, config })).rejects.toThrow(
      /context "nope" is not in/,
    );
    await expect(resolveConnection({ tokenFile: path.join(dir, 'missing') }, { env })).rejects.toThrow(
      /cannot read token file/,
    );
  });

  it('creates and updates contexts, the first one becoming current', () => {
    const first = upsertContext({ contexts: [] }, 'a', { server: 'http://a', token: 't' });
    expect(first.created).toBe(true);
    expect(first.config.currentContext).toBe('a');
    const second = upsertContext(first.config, 'b', { server: 'http://b' });
    expect(second.config.currentContext).toBe('a');
    const updated = upsertContext(second.config, 'a', { tokenFile: '/tmp/t' });
    expect(updated.created).toBe(false);
    expect(updated.config.contexts[0]).toEqual({ name: 'a', server: 'http://a', tokenFile: '/tmp/t' });
    expect(() => upsertContext({ contexts: [] }, 'new', {})).toThrow(/--server is required/);
  });

  it('saves owner-only, reads back, and redacts tokens for view', async () => {
    const file = path.join(dir, 'nested', 'config');
    await saveClientConfig(config, file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(await loadClientConfig(file)).toEqual(config);
    expect(await readFile(file, 'utf8')).toContain('current-context: ctx');
    expect(redactClientConfig(config).contexts[0]?.token).toBe('REDACTED');
    expect(config.contexts[0]?.token).toBe('from-context');
  });

  it('names the bad field of a malformed file', () => {
    let caught: unknown;
    try {
      parseClientConfig('contexts:\n  - name: x\n    context: {token: t}\n', 'cfg');
    } catch (err) {
      caught = err;
    }
    expect(isMeshError(caught, 'MESHFED_ERR_CONFIG')).toBe(true);
    expect(isMeshError(caught) && caught.field).toBe('contexts[0].context.server');
    expect(() => parseClientConfig('contexts: 3', 'cfg')).toThrow(/contexts must be a list/);
    expect(parseClientConfig('', 'cfg')).toEqual({ contexts: [] });
  });
});
