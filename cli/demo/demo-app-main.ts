/**
 * Process entry of one sample app (cli/demo/demo-app.ts), spawned by the
 * demo so that "kill an endpoint" is a real `kill <pid>`. Options come as
 * JSON in MESHFED_DEMO_APP; the bound port is reported as one JSON line on
 * stdout. The app exits when its stdin closes, so it never outlives a demo
 * that was killed without a chance to clean up.
 */

import { startDemoApp, type DemoAppOptions } from './demo-app.js';

const options = JSON.parse(process.env.MESHFED_DEMO_APP ?? '{}') as DemoAppOptions;
const app = await startDemoApp(options).catch((err: unknown) => {
  const code = (err as { code?: unknown }).code;
  process.stderr.write(
    `error: sample app ${options.service} ${options.version} cannot listen on port ${options.port}: ${String(code ?? err)}\n`,
  );
  process.exit(2);
});
process.stdout.write(JSON.stringify({ port: app.port, pid: process.pid }) + '\n');
const stop = (): void => {
  void app.close().then(() => process.exit(0));
};
process.stdin.on('end', stop).on('error', stop).resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
