/**
 * What a zone tells global about itself over KDS, and the cross-zone
 * catalog global sends back to every zone. Shared by global-cp (merges
 * inventories) and zone-cp (reports its own, compiles remote endpoints from
 * the catalog).
 */

import type { ServicePort } from './snapshot.js';

export interface ZoneInventory {
  zone: string;
  /** How other zones reach this zone: its east-west gateway's advertised address. */
  gateway?: { address: string; port: number };
  services: ServiceInventory[];
}

export interface ServiceInventory {
  name: string;
  namespace: string;
  ports: ServicePort[];
  /**
   * Endpoints grouped by identical label sets. A remote zone computes a
   * subset's weight by matching the subset's labels against each group's,
   * so this zone need not know the DestinationRules of every other zone.
   */
  endpointGroups: EndpointGroup[];
}

export interface EndpointGroup {
  labels: Record<string, string>;
  healthy: number;
  total: number;
  /** SPIFFE IDs the group's workloads run as. */
  identities: string[];
  /** Istio locality `region/zone/subzone` of the group, when known. */
  locality?: string;
}

/** Global's merged view, minus the receiving zone itself. */
export interface ServiceCatalog {
  zones: RemoteZone[];
}

export interface RemoteZone extends ZoneInventory {
  /** False while the zone is disconnected but inside its grace period. */
  connected: boolean;
  /** ISO time of the zone's last inventory report. */
  lastSeen: string;
}
