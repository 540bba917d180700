/**
 * `meshfed capture`: install the sidecar's traffic-capture iptables rules
 * in the pod's network namespace (what the injected `meshfed-init`
 * container runs, zone-cp/webhook/webhook-inject.ts). Flags and their
 * MESHFED_* variables are exactly the ones the injector passes.
 */

import { InvalidArgumentError, Option, type Command } from 'commander';
import { MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { applyCapture } from '../../proxy/capture/capture-apply.js';
import type { CaptureOptions } from '../../proxy/capture/capture-rules.js';

interface CaptureFlags {
  proxyUid: number;
  outboundPort: number;
  inboundPort: number;
  inboundCapturePorts: '*' | number[];
  excludeInboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
  dryRun?: boolean;
  iptablesRestore?: string;
}

/** Option field (as capture-rules names it) → the flag a user typed. */
const FLAG_OF: Record<string, string> = {
  proxyUid: '--proxy-uid',
  outboundPort: '--outbound-port',
  inboundPort: '--inbound-port',
  inboundCapturePorts: '--inbound-capture-ports',
  excludeInboundPorts: '--exclude-inbound-ports',
  excludeOutboundPorts: '--exclude-outbound-ports',
  excludeOutboundCidrs: '--exclude-outbound-cidrs',
};

function parseInteger(value: string): number {
  const text = value.trim();
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError('expected a non-negative integer.');
  return Number(text);
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `15000,15090` → numbers; empty → none (the injector passes '' when nothing is excluded). */
function parsePortList(value: string): number[] {
  return splitList(value).map((p) => {
    if (!/^\d+$/.test(p)) throw new InvalidArgumentError(`"${p}" is not a port; expected e.g. 15000,15090.`);
    return Number(p);
  });
}

function parseCapturePorts(value: string): '*' | number[] {
  return value.trim() === '*' ? '*' : parsePortList(value);
}

/** Map parsed flags to CaptureOptions. */
export function captureOptionsFrom(flags: CaptureFlags): CaptureOptions {
  return {
    proxyUid: flags.proxyUid,
    outboundPort: flags.outboundPort,
    inboundPort: flags.inboundPort,
    inboundCapturePorts: flags.inboundCapturePorts,
    excludeInboundPorts: flags.excludeInboundPorts,
    excludeOutboundPorts: flags.excludeOutboundPorts,
    excludeOutboundCidrs: flags.excludeOutboundCidrs,
  };
}

/** Register `capture` on the root program. */
export function registerCaptureCommand(program: Command): void {
  program
    .command('capture')
    .description("install the sidecar's traffic-capture iptables rules (the injected init container)")
    .addOption(
      new Option('--proxy-uid <uid>', 'UID the proxy runs as; its traffic is not captured')
        .env('MESHFED_PROXY_UID')
        .argParser(parseInteger)
        .default(1337),
    )
    .addOption(
      new Option('--outbound-port <port>', "the proxy's outbound port")
        .env('MESHFED_OUTBOUND_PORT')
        .argParser(parseInteger)
        .default(15001),
    )
    .addOption(
      new Option('--inbound-port <port>', "the proxy's inbound port")
        .env('MESHFED_INBOUND_PORT')
        .argParser(parseInteger)
        .default(15006),
    )
    .addOption(
      new Option(
        '--inbound-capture-ports <ports>',
        "inbound ports to capture, comma-separated, or '*' for all",
      )
        .env('MESHFED_INBOUND_CAPTURE_PORTS')
        .argParser(parseCapturePorts)
        .default('*'),
    )
    .addOption(
      new Option('--exclude-inbound-ports <ports>', 'inbound ports never captured, comma-separated')
        .env('MESHFED_EXCLUDE_INBOUND_PORTS')
        .argParser(parsePortList)
        .default([]),
    )
    .addOption(
      new Option('--exclude-outbound-ports <ports>', 'outbound ports never captured, comma-separated')
        .env('MESHFED_EXCLUDE_OUTBOUND_PORTS')
        .argParser(parsePortList)
        .default([]),
    )
    .addOption(
      new Option('--exclude-outbound-cidrs <cidrs>', 'outbound IPv4 CIDRs never captured, comma-separated')
        .env('MESHFED_EXCLUDE_OUTBOUND_CIDRS')
        .argParser(splitList)
        .default([]),
    )
    .addOption(new Option('--dry-run', 'print the iptables-restore script instead of installing it'))
    .addOption(
      new Option('--iptables-restore <path>', 'the iptables-restore binary (default from PATH)').env(
        'MESHFED_IPTABLES_RESTORE',
      ),
    )
    .action(async (flags: CaptureFlags) => {
      let result;
      try {
        result = await applyCapture(captureOptionsFrom(flags), {
          ...(flags.dryRun === true ? { dryRun: true } : {}),
          ...(flags.iptablesRestore === undefined ? {} : { iptablesRestore: flags.iptablesRestore }),
        });
      } catch (err) {
        // Name the flag, not the option field.
        const flag = err instanceof MeshError && err.field !== undefined ? FLAG_OF[err.field] : undefined;
        if (err instanceof MeshError && flag !== undefined && err.field !== undefined) {
          throw new MeshError(err.code, err.message.replace(`${err.field}:`, `${flag}:`), {
            field: flag,
            cause: err,
          });
        }
        throw err;
      }
      if (!result.applied) {
        process.stdout.write(result.script);
        return;
      }
      createLogger('capture').info('traffic capture installed', {
        rules: result.script.split('\n').filter((l) => l.startsWith('-A')).length,
      });
    });
}
