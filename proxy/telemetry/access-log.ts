/**
 * JSON access log, one line per request or TCP connection, with the fields
 * of Istio's JSON access log format. Off unless the snapshot (or the
 * `accessLog` option) turns it on; then lines are batched and written once
 * per event-loop turn, so logging costs a JSON.stringify per request and
 * not a write(2).
 */

export interface AccessLogEntry {
  start_time: string;
  direction: 'inbound' | 'outbound';
  method: string;
  path: string;
  protocol: string;
  authority: string;
  response_code: number;
  response_flags: string;
  response_code_details: string;
  bytes_received: number;
  bytes_sent: number;
  /** Milliseconds from the first byte of the request to the last of the response. */
  duration: number;
  upstream_cluster: string;
  upstream_host: string;
  upstream_peer: string;
  downstream_remote_address: string;
  downstream_peer: string;
  requested_server_name: string;
  route_name: string;
  request_id: string;
  traceparent: string;
  user_agent: string;
  x_forwarded_for: string;
  attempts: number;
}

export type AccessLogSink = (lines: string) => void;

const stdoutSink: AccessLogSink = (lines) => {
  process.stdout.write(lines);
};

export class AccessLog {
  enabled: boolean;
  readonly #sink: AccessLogSink;
  #buffer: string[] = [];
  #scheduled = false;

  constructor(enabled: boolean, sink: AccessLogSink = stdoutSink) {
    this.enabled = enabled;
    this.#sink = sink;
  }

  write(entry: AccessLogEntry): void {
    this.#buffer.push(JSON.stringify(entry));
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(flushLog, this);
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#buffer.length === 0) return;
    const lines = this.#buffer.join('\n') + '\n';
    this.#buffer = [];
    this.#sink(lines);
  }
}

function flushLog(log: AccessLog): void {
  log.flush();
}
