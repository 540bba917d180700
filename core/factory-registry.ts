/**
 * Factories by name, in the shape of grpc-js's load-balancer registry: a
 * component registers what it can build (a load-balancing policy, a store
 * backend) and the configuration picks one by name. Used by the sidecar's
 * and the gateway's load balancers and by the store registry, so that each
 * names an unknown choice and lists the known ones the same way.
 */

import { MeshError, type ErrorCode } from './errors.js';

export class FactoryRegistry<F> {
  readonly #factories = new Map<string, F>();
  /** What the names name, for the error: `load-balancing policy`, `store scheme`. */
  readonly #what: string;
  /** The code an unknown name is refused with: a bad option (CONFIG) or a bad argument. */
  readonly #code: ErrorCode;

  constructor(what: string, code: ErrorCode) {
    this.#what = what;
    this.#code = code;
  }

  /** Makes `factory` available under `name`, replacing an earlier one of that name. */
  register(name: string, factory: F): void {
    this.#factories.set(name, factory);
  }

  /** The factory registered under `name`, if any. */
  get(name: string): F | undefined {
    return this.#factories.get(name);
  }

  /**
   * The factory registered under `name`.
   * @throws MeshError (the registry's code) naming the unknown name and the known ones.
   */
  require(name: string): F {
    const factory = this.#factories.get(name);
    if (factory === undefined) {
      throw new MeshError(
        this.#code,
        `unknown ${this.#what} ${JSON.stringify(name)}; known: ${this.names().join(', ')}`,
        { details: { name, known: this.names() } },
      );
    }
    return factory;
  }

  /** The registered names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }
}
