/**
 * The Consul source's basic contract, written against Consul's HTTP API
 * only (no fake-only controls), so that it runs unchanged against the fake
 * and against a real agent:
 *
 *   consul agent -dev &
 *   MESHFED_TEST_CONSUL_ADDR=http://127.0.0.1:8500 \
 *     NODE_OPTIONS=--experimental-vm-modules npx jest test/consul/discovery-consul-contract.test.ts
 *
 * (`MESHFED_TEST_CONSUL_TOKEN` for an agent with ACLs.) Everything it
 * registers is on nodes and under a tag unique to the run, and removed
 * afterwards, so it can share an agent with other services.
 */

import { randomBytes } from 'node:crypto';

import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';

import { ConsulSource } from '../../zone-cp/discovery/discovery-consul.js';
import { FakeConsul } from '../common/fake-consul.js';
import { waitFor } from '../common/wait.js';

interface Target {
  url: string;
  token: string | undefined;
  close(): Promise<void>;
}

function describeContract(title: string, makeTarget: () => Promise<Target>): void {
  describe(title, () => {
    let target: Target;
    const run = randomBytes(4).toString('hex');
    const tag = `meshfed-contract-${run}`;
    const nodes = [`meshfed-contract-${run}-vm-1`, `meshfed-contract-${run}-vm-2`];
    const sources: ConsulSource[] = [];

    async function api(path: string, body: unknown): Promise<void> {
      const res = await fetch(`${target.url}/v1/catalog/${path}`, {
        method: 'PUT',
        body: JSON.stringify(body),
        headers: target.token === undefined ? {} : { 'x-consul-token': target.token },
      });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    }

    async function registerWeb(node: string, id: string, status: string): Promise<void> {
      await api('register', {
        Node: node,
        Address: '192.0.2.10',
        Service: { ID: id, Service: `web-${run}`, Port: 8080, Tags: [tag, 'version=v1'] },
        Check: { CheckID: `${id}-check`, Name: `check ${id}`, ServiceID: id, Status: status },
      });
    }

    beforeAll(async () => {
      target = await makeTarget();
    });
    afterEach(async () => {
      for (const source of sources.splice(0)) await source.close();
      for (const node of nodes) await api('deregister', { Node: node });
    });
    afterAll(async () => {
      await target.close();
    });

    async function source(): Promise<ConsulSource> {
      const s = new ConsulSource({
        address: target.url,
        ...(target.token === undefined ? {} : { token: target.token }),
        tagFilter: [tag],
        pollWait: '5m',
        debounceMs: 5,
      });
      sources.push(s);
      await s.start();
      return s;
    }

    const healthOf = (s: ConsulSource, id: string): boolean | undefined =>
      s.workloads().find((w) => w.annotations?.['meshfed.io/consul-service-id'] === id)?.healthy;

    it('imports registered instances, follows their health, and drops them when deregistered', async () => {
      const [vm1 = '', vm2 = ''] = nodes;
      await registerWeb(vm1, 'web-1', 'passing');
      const s = await source();
      expect(s.services().map((svc) => svc.name)).toEqual([`web-${run}`]);
      expect(s.workloads().map((w) => [w.address, w.labels.version, w.healthy])).toEqual([
        ['192.0.2.10', 'v1', true],
      ]);

      await registerWeb(vm2, 'web-2', 'passing');
      await waitFor(() => s.workloads().length === 2, { what: 'the second instance' });

      await registerWeb(vm1, 'web-1', 'critical');
      await waitFor(() => healthOf(s, 'web-1') === false, { what: 'web-1 critical' });
      expect(healthOf(s, 'web-2')).toBe(true);

      await api('deregister', { Node: vm1, ServiceID: 'web-1' });
      await waitFor(() => s.workloads().length === 1, { what: 'web-1 gone' });
      await api('deregister', { Node: vm2 });
      await waitFor(() => s.services().length === 0, { what: 'the service gone' });
    });
  });
}

describeContract('Consul source contract: fake Consul', async () => {
  const fake = await FakeConsul.start();
  return { url: fake.url, token: undefined, close: () => fake.close() };
});

const realAddress = process.env.MESHFED_TEST_CONSUL_ADDR;
if (realAddress === undefined || realAddress === '') {
  describe('Consul source contract: real agent', () => {
    it.skip('needs MESHFED_TEST_CONSUL_ADDR (see this file)', () => undefined);
  });
} else {
  describeContract(`Consul source contract: real agent at ${realAddress}`, () =>
    Promise.resolve({
      url: realAddress,
      token: process.env.MESHFED_TEST_CONSUL_TOKEN,
      close: () => Promise.resolve(),
    }),
  );
}
