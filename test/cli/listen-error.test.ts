/** A port in use is reported with the address that failed, not the flag's value. */

import { describe, expect, it } from '@jest/globals';
import net from 'node:net';
import { explainListenError } from '../../cli/signals.js';
import { listenLocal } from '../common/ports.js';

describe('explainListenError', () => {
  it('names the port a component failed to bind when the flag was --port 0', async () => {
    const taken = await listenLocal(0);
    const { port } = taken.address() as net.AddressInfo;
    try {
      const err = await listenLocal(port).then(
        (s) => {
          s.close();
          throw new Error('the second listen should have failed');
        },
        (e: unknown) => e,
      );
      const explained = explainListenError(err, undefined, 0) as Error & { code: string };
      expect(explained.code).toBe('MESHFED_ERR_CONFIG');
      expect(explained.message).toBe(
        `127.0.0.1:${port} is already in use: stop what listens there or pass --port N (0 picks a free port)`,
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('falls back to the flag when the error names no address', () => {
    const err = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    expect((explainListenError(err, '0.0.0.0', 5681) as Error).message).toMatch(
      /^0\.0\.0\.0:5681 is already in use/,
    );
  });
});
