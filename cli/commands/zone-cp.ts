/** `meshfed zone-cp`: run a zone control plane (flags, each with an environment variable). */

import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { MAX_CA_WORKERS } from '../../zone-cp/ca/ca-sign-pool.js';
import type { ZoneCpOptions } from '../../zone-cp/options.js';
import type { VmSettings } from '../../zone-cp/vm/vm-model.js';
import {
  integerIn,
  parseAtLeastSecondMs,
  parseDurationMs,
  parseDurationSeconds,
  parseHost,
  parseHostPort,
  parsePort,
  parseStoreUrl,
  parseTrustDomain,
} from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';
import { addRestServerOptions } from '../rest-server-options.js';

interface ZoneCpFlags {
  zone: string;
  host?: string;
  port?: number;
  grpcHost?: string;
  grpcPort?: number;
  grpcServerName?: string[];
  store?: string;
  dataDir?: string;
  adminTokenFile?: string;
  discovery: string[];
  globalAddress?: string[];
  globalCaFile?: string;
  globalTokenFile?: string;
  pushDebounce?: number;
  pushMaxDelay?: number;
  gatewayAddress?: string;
  trustDomain?: string;
  workloadCertTtl?: number;
  maxWorkloadCertTtl?: number;
  kubeconfig?: string;
  kubeContext?: string;
  kubeAudience?: string[];
  tlsCert?: string;
  tlsKey?: string;
  maxBodyBytes?: number;
  webhookHost?: string;
  webhookPort?: number;
  webhookCert?: string;
  webhookKey?: string;
  proxyImage?: string;
  initImage?: string;
  webhookZoneCpAddress?: string;
  vmHeartbeatInterval?: number;
  vmUnhealthyAfter?: number;
  vmRemoveAfter?: number;
  vmJoinTokenTtl?: number;
  vmGrpcAdvertiseAddress?: string;
  caWorkers?: number;
  caMaxPending?: number;
  pushBatchSize?: number;
}

function parseZoneName(value: string): string {
  const name = value.trim();
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) {
    throw new InvalidArgumentError('a zone name is a DNS-1123 label: lower-case letters, digits and -.');
  }
  return name;
}

function parseList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Map parsed flags to ZoneCpOptions, leaving unset ones to the server's defaults. */
export function zoneCpOptionsFrom(flags: ZoneCpFlags): ZoneCpOptions {
  const pairs: Array<[string | undefined, string | undefined, string]> = [
    [flags.tlsCert, flags.tlsKey, '--tls-cert and --tls-key'],
    [flags.webhookCert, flags.webhookKey, '--webhook-cert and --webhook-key'],
  ];
  for (const [a, b, what] of pairs) {
    if ((a === undefined) !== (b === undefined)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${what} go together: give both or neither`);
    }
  }
  const webhook = webhookSettingsFrom(flags);
  const global = flags.globalAddress;
  if (global === undefined && (flags.globalCaFile !== undefined || flags.globalTokenFile !== undefined)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--global-ca-file and --global-token-file need --global-address',
    );
  }
  if (global !== undefined && (flags.globalCaFile === undefined || flags.globalTokenFile === undefined)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      "--global-address needs --global-ca-file (global CA) and --global-token-file (this zone's token)",
    );
  }
  const inKubernetes = flags.discovery.includes('kubernetes');
  const kubeFlagsGiven =
    flags.kubeconfig !== undefined || flags.kubeContext !== undefined || flags.kubeAudience !== undefined;
  const kubernetes =
    !kubeFlagsGiven && !inKubernetes
      ? undefined
      : {
          ...(flags.kubeconfig === undefined ? {} : { kubeconfigPath: flags.kubeconfig }),
          ...(flags.kubeContext === undefined ? {} : { context: flags.kubeContext }),
          ...(flags.kubeAudience === undefined ? {} : { audiences: flags.kubeAudience }),
        };
  const options: ZoneCpOptions = {
    zone: flags.zone,
    dataDir: flags.dataDir ?? `.meshfed/zone-${flags.zone}`,
    discovery: flags.discovery.map((name) => ({ name })),
  };
  if (flags.host !== undefined) options.host = flags.host;
  if (flags.port !== undefined) options.port = flags.port;
  if (flags.grpcHost !== undefined) options.grpcHost = flags.grpcHost;
  if (flags.grpcPort !== undefined) options.grpcPort = flags.grpcPort;
  if (flags.grpcServerName !== undefined) options.grpcServerNames = flags.grpcServerName;
  if (flags.store !== undefined) options.storeUrl = flags.store;
  if (flags.adminTokenFile !== undefined) options.adminTokenFile = flags.adminTokenFile;
  if (global !== undefined && flags.globalCaFile !== undefined && flags.globalTokenFile !== undefined) {
    options.global = { addresses: global, caFile: flags.globalCaFile, tokenFile: flags.globalTokenFile };
  }
  if (flags.pushDebounce !== undefined) options.pushDebounceMs = flags.pushDebounce;
  if (flags.pushMaxDelay !== undefined) options.pushMaxDelayMs = flags.pushMaxDelay;
  if (flags.pushBatchSize !== undefined) options.pushBatchSize = flags.pushBatchSize;
  if (flags.caWorkers !== undefined) options.caWorkers = flags.caWorkers;
  if (flags.caMaxPending !== undefined) options.caMaxPending = flags.caMaxPending;
  if (flags.gatewayAddress !== undefined) options.gatewayAddress = flags.gatewayAddress;
  if (flags.trustDomain !== undefined) options.trustDomain = flags.trustDomain;
  if (flags.workloadCertTtl !== undefined) options.workloadCertTtlSeconds = flags.workloadCertTtl;
  if (flags.maxWorkloadCertTtl !== undefined) options.maxWorkloadCertTtlSeconds = flags.maxWorkloadCertTtl;
  if (kubernetes !== undefined) options.kubernetes = kubernetes;
  if (flags.tlsCert !== undefined) options.tlsCertFile = flags.tlsCert;
  if (flags.tlsKey !== undefined) options.tlsKeyFile = flags.tlsKey;
  if (flags.maxBodyBytes !== undefined) options.maxBodyBytes = flags.maxBodyBytes;
  if (webhook !== undefined) options.webhook = webhook;
  const vm = vmSettingsFrom(flags);
  if (vm !== undefined) options.vm = vm;
  return options;
}

/** VM enrollment settings (zone-cp/vm/vm-model.ts VmSettings), checked against each other naming the flags. */
function vmSettingsFrom(flags: ZoneCpFlags): VmSettings | undefined {
  const heartbeatMs = (flags.vmHeartbeatInterval ?? 10) * 1000;
  const unhealthyMs = flags.vmUnhealthyAfter ?? 30_000;
  const removeMs = flags.vmRemoveAfter ?? 3_600_000;
  if (unhealthyMs <= heartbeatMs) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--vm-unhealthy-after (${unhealthyMs / 1000}s) must be longer than --vm-heartbeat-interval (${heartbeatMs / 1000}s): every VM would be marked unhealthy between two heartbeats`,
    );
  }
  if (removeMs < unhealthyMs) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--vm-remove-after (${removeMs / 1000}s) must not be shorter than --vm-unhealthy-after (${unhealthyMs / 1000}s)`,
    );
  }
  const vm: VmSettings = {
    ...(flags.vmHeartbeatInterval === undefined
      ? {}
      : { heartbeatIntervalSeconds: flags.vmHeartbeatInterval }),
    ...(flags.vmUnhealthyAfter === undefined ? {} : { unhealthyAfterMs: flags.vmUnhealthyAfter }),
    ...(flags.vmRemoveAfter === undefined ? {} : { removeAfterMs: flags.vmRemoveAfter }),
    ...(flags.vmJoinTokenTtl === undefined ? {} : { defaultJoinTokenTtlSeconds: flags.vmJoinTokenTtl }),
    ...(flags.vmGrpcAdvertiseAddress === undefined
      ? {}
      : { grpcAdvertiseAddress: flags.vmGrpcAdvertiseAddress }),
  };
  return Object.keys(vm).length === 0 ? undefined : vm;
}

/** The injection webhook's settings: served when --webhook-cert/--webhook-key are given (HTTPS only). */
function webhookSettingsFrom(flags: ZoneCpFlags): ZoneCpOptions['webhook'] {
  if (flags.webhookCert === undefined || flags.webhookKey === undefined) {
    const stray = [
      ['--webhook-host', flags.webhookHost],
      ['--webhook-port', flags.webhookPort],
      ['--proxy-image', flags.proxyImage],
      ['--init-image', flags.initImage],
      ['--webhook-zone-cp-address', flags.webhookZoneCpAddress],
    ]
      .filter(([, value]) => value !== undefined)
      .map(([flag]) => String(flag));
    if (stray.length > 0) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `${stray.join(', ')} need --webhook-cert and --webhook-key (the injection webhook is served only over HTTPS)`,
      );
    }
    return undefined;
  }
  if (flags.proxyImage === undefined) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--webhook-cert needs --proxy-image (the image of the sidecar the webhook injects)',
    );
  }
  return {
    certFile: flags.webhookCert,
    keyFile: flags.webhookKey,
    proxyImage: flags.proxyImage,
    ...(flags.webhookHost === undefined ? {} : { host: flags.webhookHost }),
    ...(flags.webhookPort === undefined ? {} : { port: flags.webhookPort }),
    ...(flags.initImage === undefined ? {} : { initImage: flags.initImage }),
    ...(flags.webhookZoneCpAddress === undefined ? {} : { zoneCpAddress: flags.webhookZoneCpAddress }),
  };
}

function parseImage(value: string): string {
  const image = value.trim();
  if (image === '' || /\s/.test(image))
    throw new InvalidArgumentError('expected a container image reference.');
  return image;
}

/** Register `zone-cp` on the root program. */
export function registerZoneCpCommand(program: Command): void {
  addRestServerOptions(program.command('zone-cp'))
    .description('run a zone control plane (workload CA, discovery, config compiler, MDS, zone API)')
    .addOption(
      new Option('--zone <name>', "this zone's name, as global knows it")
        .env('MESHFED_ZONE')
        .argParser(parseZoneName)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--host <addr>', 'REST API bind address (default 127.0.0.1)')
        .env('MESHFED_ZONE_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--port <port>', 'REST API port; 0 picks a free one (default 5682)')
        .env('MESHFED_ZONE_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--grpc-host <addr>', 'MDS + CA bind address (default 127.0.0.1)')
        .env('MESHFED_ZONE_GRPC_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--grpc-port <port>', 'MDS + CA port; 0 picks a free one (default 5678)')
        .env('MESHFED_ZONE_GRPC_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--grpc-server-name <names>',
        'extra DNS names for the MDS/CA server certificate, comma-separated',
      )
        .env('MESHFED_ZONE_GRPC_SERVER_NAMES')
        .argParser(parseList),
    )
    .addOption(
      new Option(
        '--store <url>',
        'memory://, file:///abs/dir or redis://host:port/db (default: file store under --data-dir)',
      )
        .env('MESHFED_STORE')
        .argParser(parseStoreUrl),
    )
    .addOption(
      new Option(
        '--data-dir <dir>',
        'directory for the file store and the admin token (default .meshfed/zone-<zone>)',
      ).env('MESHFED_DATA_DIR'),
    )
    .addOption(
      new Option(
        '--admin-token-file <file>',
        'where the zone admin token is written (default <data-dir>/admin-token)',
      ).env('MESHFED_ADMIN_TOKEN_FILE'),
    )
    .addOption(
      new Option('--discovery <sources>', 'discovery sources, comma-separated: universal, kubernetes')
        .env('MESHFED_DISCOVERY')
        .argParser(parseList)
        .default(['universal']),
    )
    .addOption(
      new Option(
        '--global-address <addrs>',
        'global CP KDS address(es) host:port, comma-separated; absent = standalone',
      )
        .env('MESHFED_GLOBAL_ADDRESS')
        .argParser((v) => parseList(v).map(parseHostPort)),
    )
    .addOption(
      new Option('--global-ca-file <file>', 'CA certificate (PEM) of the global CP').env(
        'MESHFED_GLOBAL_CA_FILE',
      ),
    )
    .addOption(
      new Option('--global-token-file <file>', "file holding this zone's token (kind zone)").env(
        'MESHFED_GLOBAL_TOKEN_FILE',
      ),
    )
    .addOption(
      new Option('--push-debounce <duration>', 'quiet time before pushing a change (default 100ms)')
        .env('MESHFED_PUSH_DEBOUNCE')
        .argParser(parseDurationMs),
    )
    .addOption(
      new Option('--push-batch-size <n>', 'proxies pushed per event-loop turn in a push round (default 100)')
        .env('MESHFED_PUSH_BATCH_SIZE')
        .argParser(integerIn(1, 100_000)),
    )
    .addOption(
      new Option(
        '--ca-workers <n>',
        'worker threads that check CSRs and sign certificates; 0 signs on the main thread (default: cores - 1, at least 1)',
      )
        .env('MESHFED_CA_WORKERS')
        .argParser(integerIn(0, MAX_CA_WORKERS)),
    )
    .addOption(
      new Option('--ca-max-pending <n>', 'signing requests queued before RESOURCE_EXHAUSTED (default 1024)')
        .env('MESHFED_CA_MAX_PENDING')
        .argParser(integerIn(1, 1_000_000)),
    )
    .addOption(
      new Option('--push-max-delay <duration>', 'longest a change waits for quiet (default 1s)')
        .env('MESHFED_PUSH_MAX_DELAY')
        .argParser(parseDurationMs),
    )
    .addOption(
      new Option('--gateway-address <host:port>', "this zone's east-west gateway as other zones reach it")
        .env('MESHFED_GATEWAY_ADDRESS')
        .argParser(parseHostPort),
    )
    .addOption(
      new Option('--trust-domain <domain>', 'trust domain of a standalone zone root (default cluster.local)')
        .env('MESHFED_TRUST_DOMAIN')
        .argParser(parseTrustDomain),
    )
    .addOption(
      new Option('--workload-cert-ttl <duration>', 'default workload certificate lifetime (default 1h)')
        .env('MESHFED_WORKLOAD_CERT_TTL')
        .argParser(parseDurationSeconds),
    )
    .addOption(
      new Option('--max-workload-cert-ttl <duration>', 'longest lifetime granted (default 24h)')
        .env('MESHFED_MAX_WORKLOAD_CERT_TTL')
        .argParser(parseDurationSeconds),
    )
    .addOption(
      new Option(
        '--kubeconfig <file>',
        "kubeconfig of the zone's cluster (default KUBECONFIG, ~/.kube/config, in-cluster)",
      ).env('MESHFED_KUBECONFIG'),
    )
    .addOption(new Option('--kube-context <name>', 'context of the kubeconfig').env('MESHFED_KUBE_CONTEXT'))
    .addOption(
      new Option('--kube-audience <audiences>', 'audiences ServiceAccount tokens must carry, comma-separated')
        .env('MESHFED_KUBE_AUDIENCES')
        .argParser(parseList),
    )
    .addOption(
      new Option(
        '--webhook-cert <file>',
        'serve the sidecar injection webhook over HTTPS with this certificate (PEM)',
      ).env('MESHFED_WEBHOOK_CERT'),
    )
    .addOption(new Option('--webhook-key <file>', 'key of --webhook-cert (PEM)').env('MESHFED_WEBHOOK_KEY'))
    .addOption(
      new Option('--webhook-host <addr>', 'injection webhook bind address (default 0.0.0.0)')
        .env('MESHFED_WEBHOOK_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--webhook-port <port>', 'injection webhook port; 0 picks a free one (default 15017)')
        .env('MESHFED_WEBHOOK_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--proxy-image <image>', 'image of the sidecar the webhook injects (it runs meshfed-proxy)')
        .env('MESHFED_PROXY_IMAGE')
        .argParser(parseImage),
    )
    .addOption(
      new Option('--init-image <image>', 'image of the injected init container (default --proxy-image)')
        .env('MESHFED_INIT_IMAGE')
        .argParser(parseImage),
    )
    .addOption(
      new Option(
        '--webhook-zone-cp-address <host:port>',
        'MDS + CA address injected sidecars dial (default meshfed-zone-cp.meshfed-system.svc:<grpc port>)',
      )
        .env('MESHFED_WEBHOOK_ZONE_CP_ADDRESS')
        .argParser(parseHostPort),
    )
    // VM enrollment (docs/vm.md).
    .addOption(
      new Option('--vm-heartbeat-interval <duration>', 'heartbeat period asked of VM agents (default 10s)')
        .env('MESHFED_VM_HEARTBEAT_INTERVAL')
        .argParser(parseDurationSeconds),
    )
    .addOption(
      new Option('--vm-unhealthy-after <duration>', 'a VM silent this long is marked unhealthy (default 30s)')
        .env('MESHFED_VM_UNHEALTHY_AFTER')
        .argParser(parseAtLeastSecondMs),
    )
    .addOption(
      new Option(
        '--vm-remove-after <duration>',
        'a VM silent this long loses its WorkloadEntry and certificate (default 1h)',
      )
        .env('MESHFED_VM_REMOVE_AFTER')
        .argParser(parseAtLeastSecondMs),
    )
    .addOption(
      new Option(
        '--vm-join-token-ttl <duration>',
        'how long a VM join token created without --ttl is accepted (default 24h)',
      )
        .env('MESHFED_VM_JOIN_TOKEN_TTL')
        .argParser(parseDurationSeconds),
    )
    .addOption(
      new Option(
        '--vm-grpc-advertise-address <host:port>',
        'MDS + CA address VMs dial (default the gRPC bind address, or the join URL host when that is 0.0.0.0)',
      )
        .env('MESHFED_VM_GRPC_ADVERTISE_ADDRESS')
        .argParser(parseHostPort),
    )
    .action(async (flags: ZoneCpFlags) => {
      const options = zoneCpOptionsFrom(flags);
      // Loaded here, not at the top: client commands should not pay for the server's modules.
      const { startZoneCp } = await import('../../zone-cp/zone-cp.js');
      const handle = await startZoneCp(options).catch((err: unknown) => {
        throw explainListenError(
          err,
          options.host,
          options.port ?? 5682,
          '--port, --grpc-port or --webhook-port',
        );
      });
      exitOnSignal(() => handle.close());
      createLogger('cli').info('zone control plane listening', {
        zone: handle.zone,
        api: handle.restUrl,
        grpc: handle.grpcAddress,
        adminTokenFile: handle.adminTokenFile,
        ...(handle.webhookUrl === undefined ? {} : { webhook: handle.webhookUrl }),
      });
    });
}
