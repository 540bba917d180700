/**
 * Validation of Kubernetes manifests without a cluster:
 * - the Kubernetes OpenAPI schemas as kubernetes-models ships them (types,
 *   required fields, enums, formats), one validator per apiVersion/kind;
 * - unknown fields, which those schemas allow but `kubectl apply` (strict
 *   field validation, the default since Kubernetes 1.27) refuses: checked
 *   against @kubernetes/client-node's model attribute maps, which list every
 *   field of every type of the same OpenAPI document.
 * A kind neither knows is an error, never a skip.
 */

import * as k8s from '@kubernetes/client-node';
import * as models from 'kubernetes-models';

import { isObj } from './deploy-helpers.js';

/**
 * API versions served by the Kubernetes releases kind runs (1.29 and later).
 * kubernetes-models also ships removed betas (extensions/v1beta1, …), which
 * an apply to a current cluster would refuse.
 */
export const SERVED_API_VERSIONS = new Set([
  'v1',
  'apps/v1',
  'batch/v1',
  'policy/v1',
  'autoscaling/v2',
  'networking.k8s.io/v1',
  'discovery.k8s.io/v1',
  'rbac.authorization.k8s.io/v1',
  'admissionregistration.k8s.io/v1',
  'apiextensions.k8s.io/v1',
  'scheduling.k8s.io/v1',
  'storage.k8s.io/v1',
  'coordination.k8s.io/v1',
  'certificates.k8s.io/v1',
]);

interface ModelClass {
  apiVersion: string;
  kind: string;
  new (data: unknown): { validate(): void };
}

function isModelClass(value: unknown): value is ModelClass {
  return (
    typeof value === 'function' &&
    typeof (value as unknown as Record<string, unknown>).apiVersion === 'string' &&
    typeof (value as unknown as Record<string, unknown>).kind === 'string'
  );
}

let modelIndex: Map<string, ModelClass> | undefined;

/** Every model class of kubernetes-models by `apiVersion/kind`. */
function modelsByKind(): Map<string, ModelClass> {
  if (modelIndex) return modelIndex;
  const index = new Map<string, ModelClass>();
  const seen = new Set<unknown>();
  const walk = (node: unknown, depth: number): void => {
    if (!isObj(node) || seen.has(node) || depth > 4) return;
    seen.add(node);
    for (const value of Object.values(node)) {
      if (isModelClass(value)) index.set(`${value.apiVersion}/${value.kind}`, value);
      else walk(value, depth + 1);
    }
  };
  walk(models as unknown, 0);
  modelIndex = index;
  return index;
}

interface Attribute {
  name: string;
  baseName: string;
  type: string;
}

interface ClientModel {
  getAttributeTypeMap(): Attribute[];
}

function clientModel(type: string): ClientModel | undefined {
  const value: unknown = (k8s as unknown as Record<string, unknown>)[type];
  if (typeof value === 'function' && 'getAttributeTypeMap' in value) return value as unknown as ClientModel;
  return undefined;
}

/** client-node's model name of an apiVersion/kind: apps/v1 Deployment → V1Deployment. */
function clientTypeOf(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop() ?? '';
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
}

const PRIMITIVES = new Set(['string', 'number', 'boolean', 'Date', 'object', 'any', 'IntOrString']);

/** Paths of fields that `type` does not define, found recursively under `value`. */
function unknownFields(value: unknown, type: string, at: string, out: string[]): void {
  if (value === null || value === undefined || PRIMITIVES.has(type)) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array?.[1]) {
    if (Array.isArray(value))
      value.forEach((item, i) => unknownFields(item, array[1] ?? '', `${at}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map?.[1]) {
    if (isObj(value))
      for (const [k, v] of Object.entries(value)) unknownFields(v, map[1] ?? '', `${at}.${k}`, out);
    return;
  }
  const model = clientModel(type);
  if (!model) {
    out.push(`${at}: no model for type ${type}`);
    return;
  }
  if (!isObj(value)) return; // a type error: the OpenAPI validator reports it
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a]));
  for (const [key, child] of Object.entries(value)) {
    const attribute = attributes.get(key);
    if (!attribute) {
      out.push(
        `${at === '' ? '' : `${at}.`}${key}: unknown field (${type} has ${[...attributes.keys()].join(', ')})`,
      );
      continue;
    }
    unknownFields(child, attribute.type, at === '' ? key : `${at}.${key}`, out);
  }
}

/**
 * Problems of one Kubernetes object: an unknown or unserved apiVersion/kind,
 * OpenAPI schema violations, unknown fields. Empty when it is valid.
 */
export function validateKubernetesObject(obj: Record<string, unknown>): string[] {
  const apiVersion = String(obj.apiVersion);
  const kind = String(obj.kind);
  if (!SERVED_API_VERSIONS.has(apiVersion)) {
    return [
      `apiVersion ${apiVersion} is not one a current Kubernetes serves (known: ${[...SERVED_API_VERSIONS].join(', ')})`,
    ];
  }
  const Model = modelsByKind().get(`${apiVersion}/${kind}`);
  if (!Model) return [`${apiVersion} ${kind} is not a Kubernetes kind the schemas know`];
  const problems: string[] = [];
  try {
    new Model(obj).validate();
  } catch (err) {
    problems.push(`schema: ${(err as Error).message}`);
  }
  const type = clientTypeOf(apiVersion, kind);
  if (!clientModel(type)) problems.push(`no field list for ${type}`);
  else unknownFields(obj, type, '', problems);
  return problems;
}
