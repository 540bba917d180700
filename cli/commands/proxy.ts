/**
 * `meshfed proxy`: run a sidecar. Its flags, their environment variables and
 * what a run does live in proxy-flags.ts, which the lean sidecar entry
 * (cli/proxy-main.ts) reads too; this file only registers them with
 * commander for the full CLI.
 */

import { Option, type Command } from 'commander';
import { forCommander } from '../flags.js';
import { PROXY_DESCRIPTION, PROXY_FLAGS, runProxy, type ProxyFlags } from './proxy-flags.js';

/** Register `proxy` on the root program. */
export function registerProxyCommand(program: Command): void {
  const command = program.command('proxy').description(PROXY_DESCRIPTION);
  for (const spec of PROXY_FLAGS) {
    const option = new Option(spec.flags, spec.description).env(spec.env);
    const parse = spec.parse;
    if (parse !== undefined)
      option.argParser(forCommander<unknown, unknown>((value, previous) => parse(value, previous)));
    if (spec.choices !== undefined) option.choices(spec.choices);
    command.addOption(option);
  }
  command.action((flags: ProxyFlags) => runProxy(flags));
}
