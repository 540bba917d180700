/**
 * Stored objects from YAML documents, as a store hands them out: each gets a
 * uid, resourceVersion and creation time in document order (older first), so
 * compiler tests can rely on "oldest wins" ordering.
 */

import { parse } from 'yaml';
import type { StoredResource } from '../../core/resource/resource.js';

let revision = 0;

/** `defaultNamespace` applies to namespaced kinds whose document names none (Mesh is cluster-scoped). */
export function storedFromYaml(yaml: string, defaultNamespace: string): StoredResource[] {
  return yaml
    .split(/^---$/m)
    .filter((doc) => doc.trim() !== '')
    .map((doc) => {
      const object = parse(doc) as StoredResource;
      revision++;
      return {
        ...object,
        metadata: {
          namespace: object.kind === 'Mesh' ? undefined : defaultNamespace,
          ...object.metadata,
          uid: `uid-${revision}`,
          resourceVersion: String(revision),
          generation: 1,
          creationTimestamp: new Date(Date.UTC(2025, 0, 1, 0, 0, revision)).toISOString(),
        },
      } as StoredResource;
    });
}
