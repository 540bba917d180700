/**
 * The request target as the inbound side reads it before authorization and
 * routing to the app (Envoy's behaviour with Istio's default path
 * normalization, BASE):
 * - absolute-form (`GET http://host/path`, RFC 9112 §3.2.2) becomes
 *   origin-form, its authority replacing Host, so that a policy on
 *   `/admin*` sees `/admin/users` however the client spelled it;
 * - dot segments are removed (RFC 3986 §5.2.4), `%2e` counted as a dot,
 *   so `/public/../admin` is `/admin` both to the policy and to the app.
 * Anything else (`*` but for OPTIONS, a scheme other than http(s), no
 * leading slash) is not a target the app could be meant to get.
 */

export interface RequestTarget {
  /** Origin-form: `/path?query`, normalized. */
  path: string;
  /** The authority of an absolute-form target, which replaces Host; undefined for origin-form. */
  authority: string | undefined;
}

const SLASH = 47;

/**
 * Splits an absolute-form target (`http://` or `https://`) into its
 * authority and origin-form; origin-form comes back as it is. Undefined for
 * anything else.
 */
export function splitRequestTarget(target: string): RequestTarget | undefined {
  if (target.charCodeAt(0) === SLASH) return { path: target, authority: undefined };
  const scheme = target.slice(0, 8).toLowerCase();
  const skip = scheme.startsWith('http://') ? 7 : scheme === 'https://' ? 8 : 0;
  if (skip === 0) return undefined;
  let end = target.length;
  for (let i = skip; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === SLASH || c === 63 /* ? */ || c === 35 /* # */) {
      end = i;
      break;
    }
  }
  const authority = target.slice(skip, end);
  if (authority === '') return undefined;
  const rest = target.slice(end);
  return { path: rest.charCodeAt(0) === SLASH ? rest : `/${rest}`, authority };
}

function dotSegment(segment: string): 0 | 1 | 2 {
  if (segment.length === 0 || segment.length > 6) return 0;
  const plain = segment.length === 1 || segment.length === 2 ? segment : segment.replace(/%2e/gi, '.');
  return plain === '.' ? 1 : plain === '..' ? 2 : 0;
}

/** `path` (origin-form, query kept as is) without `.` and `..` segments. */
export function removeDotSegments(path: string): string {
  const q = path.indexOf('?');
  const pathPart = q < 0 ? path : path.slice(0, q);
  // Most paths have neither a dot nor a '%': nothing to do, nothing allocated.
  if (pathPart.indexOf('.') < 0 && pathPart.indexOf('%') < 0) return path;
  const segments = pathPart.split('/');
  const out: string[] = [];
  let changed = false;
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] ?? '';
    const dots = dotSegment(segment);
    if (dots === 0) {
      out.push(segment);
      continue;
    }
    changed = true;
    if (dots === 2) out.pop();
    // A trailing dot segment leaves the directory: `/a/b/..` is `/a/`.
    if (i === segments.length - 1) out.push('');
  }
  if (!changed) return path;
  return `/${out.join('/')}${q < 0 ? '' : path.slice(q)}`;
}

/** The inbound request target, or undefined when it is not one an app can be sent (400). */
export function inboundRequestTarget(target: string, method: string): RequestTarget | undefined {
  if (target === '*') return method === 'OPTIONS' ? { path: '*', authority: undefined } : undefined;
  const split = splitRequestTarget(target);
  if (split === undefined) return undefined;
  const path = removeDotSegments(split.path);
  return path === split.path ? split : { path, authority: split.authority };
}
