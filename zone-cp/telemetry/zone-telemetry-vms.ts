/**
 * The zone's VMs as the dashboard shows them: every discovered workload
 * whose WorkloadEntry came from a VM join (it carries the WorkloadGroup
 * label), its health as discovery sees it (the Healthy condition kept by
 * VM enrollment), whether its sidecar is connected, and when its workload
 * certificate expires (what the zone CA issued or the stream presented).
 */

import { MAX_VMS_PER_MESSAGE, type VmStatus } from '../../core/telemetry/telemetry-report.js';
import type { MeshView } from '../compiler/mesh-view.js';
import type { ProxyRecord } from '../mds/proxy-record.js';
import { VM_GROUP_LABEL } from '../vm/vm-model.js';

export function vmStatuses(view: MeshView, records: readonly ProxyRecord[]): VmStatus[] {
  const proxies = new Map<string, ProxyRecord>();
  // Connected records come first: keep the first (live) one per workload.
  for (const r of records) {
    const key = `${r.namespace}/${r.workload}`;
    if (r.kind === 'sidecar' && !proxies.has(key)) proxies.set(key, r);
  }
  const vms = new Map<string, VmStatus>();
  for (const service of view.services.values()) {
    for (const endpoint of service.local) {
      const group = endpoint.labels[VM_GROUP_LABEL];
      const key = `${endpoint.namespace}/${endpoint.name}`;
      if (group === undefined || vms.has(key) || vms.size >= MAX_VMS_PER_MESSAGE) continue;
      const record = proxies.get(key);
      vms.set(key, {
        name: endpoint.name,
        namespace: endpoint.namespace,
        address: endpoint.address,
        group,
        healthy: endpoint.healthy,
        proxyConnected: record?.connected ?? false,
        ...(record?.certificateExpiry === undefined ? {} : { certificateExpiry: record.certificateExpiry }),
      });
    }
  }
  return [...vms.values()];
}
