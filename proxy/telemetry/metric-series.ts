/**
 * Prometheus export for metrics the data path counts in plain objects.
 * prom-client hashes the label set on every observation, which with
 * Istio's 25 labels costs microseconds per request; here a request finds
 * its series through a cached reference and bumps numbers, and the label
 * sets are only turned into text when Prometheus scrapes.
 */

import { Counter, Histogram, type Registry } from '../../core/prom-modules.js';

export type Labels = Record<string, string>;

/** Observations of one histogram series: per-bucket (non-cumulative) counts, sum and count. */
export class HistogramData {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bucketCount: number) {
    // One more slot for +Inf.
    this.counts = new Float64Array(bucketCount + 1);
  }

  observe(bounds: readonly number[], value: number): void {
    let i = 0;
    const n = bounds.length;
    while (i < n && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += value;
    this.count++;
  }
}

type CounterGet = Awaited<ReturnType<Counter<string>['get']>>;
type HistogramGet = Awaited<ReturnType<Histogram<string>['get']>>;

/** A counter whose values come from `read()` at scrape time. */
export class ExportedCounter extends Counter<string> {
  readonly #read: () => Iterable<{ labels: Labels; value: number }>;
  readonly #name: string;
  readonly #help: string;

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    read: () => Iterable<{ labels: Labels; value: number }>,
  ) {
    super({ name, help, labelNames: [...labelNames], registers: [registry] });
    this.#read = read;
    this.#name = name;
    this.#help = help;
  }

  override async get(): Promise<CounterGet> {
    const values = [];
    for (const v of this.#read()) values.push({ labels: v.labels, value: v.value });
    return {
      name: this.#name,
      help: this.#help,
      type: 'counter',
      aggregator: 'sum',
      values,
    } as unknown as CounterGet;
  }
}

/** A histogram whose series come from `read()` at scrape time. */
export class ExportedHistogram extends Histogram<string> {
  readonly #read: () => Iterable<{ labels: Labels; data: HistogramData }>;
  readonly #bounds: readonly number[];
  readonly #name: string;
  readonly #help: string;

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    bounds: readonly number[],
    read: () => Iterable<{ labels: Labels; data: HistogramData }>,
  ) {
    super({ name, help, labelNames: [...labelNames], buckets: [...bounds], registers: [registry] });
    this.#read = read;
    this.#bounds = bounds;
    this.#name = name;
    this.#help = help;
  }

  override async get(): Promise<HistogramGet> {
    const values: Array<{ labels: Labels; value: number; metricName: string }> = [];
    const bucketName = `${this.#name}_bucket`;
    for (const { labels, data } of this.#read()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += data.counts[i] ?? 0;
        values.push({
          labels: { ...labels, le: String(this.#bounds[i]) },
          value: acc,
          metricName: bucketName,
        });
      }
      values.push({ labels: { ...labels, le: '+Inf' }, value: data.count, metricName: bucketName });
      values.push({ labels, value: data.sum, metricName: `${this.#name}_sum` });
      values.push({ labels, value: data.count, metricName: `${this.#name}_count` });
    }
    return {
      name: this.#name,
      help: this.#help,
      type: 'histogram',
      aggregator: 'sum',
      values,
    } as unknown as HistogramGet;
  }

  /** The registry prefers this over get() for text output. */
  async getForPromString(): Promise<HistogramGet> {
    return this.get();
  }
}
