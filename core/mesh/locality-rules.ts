/**
 * DestinationRule `trafficPolicy.loadBalancer.localityLbSetting` read into
 * LocalityRules, strictly: a malformed entry is a VALIDATION error naming its
 * field. One reader for the proxy (which NACKs a snapshot that fails it) and
 * the zone CP's `inspect service` (which must plan exactly as the proxy does).
 */

import {
  arrayAt,
  invalid,
  objectAt,
  optionalBoolean,
  optionalString,
  stringList,
  type Obj,
} from '../resource/config-read.js';
import type { LocalityRules } from './locality-plan.js';

export function parseLocalityRules(setting: Obj, path: string): LocalityRules {
  const failover = arrayAt(setting, 'failover', path).map((f, i) => {
    const p = `${path}.failover[${i}]`;
    const rule = objectAt(f, p);
    return { from: optionalString(rule, 'from', p) ?? '', to: optionalString(rule, 'to', p) ?? '' };
  });
  const distribute = arrayAt(setting, 'distribute', path).map((d, i) => {
    const p = `${path}.distribute[${i}]`;
    const rule = objectAt(d, p);
    const to = objectAt(rule.to ?? {}, `${p}.to`);
    const weights: Array<[string, number]> = [];
    let sum = 0;
    for (const [locality, weight] of Object.entries(to)) {
      if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 100) {
        throw invalid(`${p}.to[${JSON.stringify(locality)}]`, 'must be a whole number from 0 to 100');
      }
      weights.push([locality, weight]);
      sum += weight;
    }
    if (weights.length > 0 && sum !== 100) throw invalid(`${p}.to`, `weights sum to ${sum}, not 100`);
    return { from: optionalString(rule, 'from', p) ?? '*', to: weights };
  });
  if (failover.length > 0 && distribute.length > 0) {
    throw invalid(path, 'set failover or distribute, not both');
  }
  return {
    enabled: optionalBoolean(setting, 'enabled', path) ?? true,
    failover,
    failoverPriority: stringList(setting, 'failoverPriority', path),
    distribute,
  };
}
