/**
 * A TCP relay for `meshfed demo --netns`: run inside a zone's network
 * namespace, it makes the zone CP's loopback-only REST API reachable from
 * the host on the zone's address (the zone's iptables accept the host only),
 * so the operator's `meshfed --server http://<zone>:5682 inspect …` works
 * as it would against a cluster's zone CP. Options come as JSON in
 * MESHFED_DEMO_RELAY: {listenHost, listenPort, targetHost, targetPort}. It
 * exits when its stdin closes.
 */

import net from 'node:net';

interface RelayOptions {
  listenHost: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
}

const options = JSON.parse(process.env.MESHFED_DEMO_RELAY ?? '{}') as RelayOptions;
const server = net.createServer((client) => {
  const upstream = net.connect(options.targetPort, options.targetHost);
  client.pipe(upstream).pipe(client);
  const drop = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', drop);
  upstream.on('error', drop);
});
server.once('error', (err) => {
  process.stderr.write(
    `error: relay cannot listen on ${options.listenHost}:${options.listenPort}: ${err.message}\n`,
  );
  process.exit(2);
});
server.listen(options.listenPort, options.listenHost, () => {
  process.stdout.write(JSON.stringify({ port: options.listenPort, pid: process.pid }) + '\n');
});
const stop = (): void => {
  server.close();
  process.exit(0);
};
process.stdin.on('end', stop).on('error', stop).resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
