/** Label selection as Kubernetes and Istio define it: every selector label must be present with that value. */

/** True if `labels` carries every key/value of `selector` (an empty or absent selector selects everything). */
export function selectorMatches(
  selector: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (selector === undefined) return true;
  for (const key in selector) {
    if (labels[key] !== selector[key]) return false;
  }
  return true;
}

/** A stable string for a label set (sorted), to group and cache by. */
export function labelsKey(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k] ?? ''}`)
    .join(',');
}

/** `matchLabels` of an Istio selector object, or undefined when there is none. */
export function matchLabelsOf(selector: unknown): Record<string, string> | undefined {
  if (typeof selector !== 'object' || selector === null) return undefined;
  const match = (selector as { matchLabels?: unknown }).matchLabels;
  if (typeof match !== 'object' || match === null) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(match)) if (typeof v === 'string') out[k] = v;
  return out;
}
