/**
 * The mesh SNI: how a client proxy names its destination in the TLS
 * ClientHello so the same connection works directly to the destination's
 * proxy or through another zone's east-west gateway, which routes on it
 * without decrypting:
 *
 *   <subset|_>.<port>.<service>.<namespace>.svc.mesh
 *
 * `_` stands for "any endpoint of the service". Service and namespace are
 * DNS-1123 labels and a subset name is a DNS-1123 label too, so the dots are
 * unambiguous. docs/sni.md documents the form for operators.
 */

export const MESH_SNI_SUFFIX = '.svc.mesh';
export const ANY_SUBSET = '_';

export interface MeshSni {
  /** Subset name, or `_` for the whole service. */
  subset: string;
  /** Service port the client addressed. */
  port: number;
  service: string;
  namespace: string;
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function formatMeshSni(sni: MeshSni): string {
  return `${sni.subset}.${sni.port}.${sni.service}.${sni.namespace}${MESH_SNI_SUFFIX}`;
}

/** Parses a mesh SNI; anything that is not exactly that form gives undefined. */
export function parseMeshSni(serverName: string): MeshSni | undefined {
  if (!serverName.endsWith(MESH_SNI_SUFFIX)) return undefined;
  const parts = serverName.slice(0, -MESH_SNI_SUFFIX.length).split('.');
  if (parts.length !== 4) return undefined;
  const [subset = '', portText = '', service = '', namespace = ''] = parts;
  if (subset !== ANY_SUBSET && !LABEL.test(subset)) return undefined;
  if (!/^[1-9][0-9]{0,4}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  if (!LABEL.test(service) || !LABEL.test(namespace)) return undefined;
  return { subset, port, service, namespace };
}
