/**
 * HTTP/2 error codes (RFC 9113 section 7) and the error that carries one.
 * A stream error resets one stream (RST_STREAM); a connection error ends the
 * connection (GOAWAY). The codes are the protocol's own, so they are stable
 * by definition and go on the wire as they are.
 */

export const H2ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export type H2ErrorCodeValue = (typeof H2ErrorCode)[keyof typeof H2ErrorCode];

const NAMES = new Map<number, string>(Object.entries(H2ErrorCode).map(([name, code]) => [code, name]));

/** The code's name, or its number in hex for codes this implementation does not know. */
export function h2ErrorName(code: number): string {
  return NAMES.get(code) ?? `0x${code.toString(16)}`;
}

export class H2Error extends Error {
  /** The RFC 9113 error code sent in RST_STREAM or GOAWAY. */
  readonly h2Code: number;
  /** The stream it concerns: 0 for a connection error. */
  readonly streamId: number;

  constructor(h2Code: number, message: string, streamId = 0) {
    super(`${h2ErrorName(h2Code)}: ${message}`);
    this.name = 'H2Error';
    this.h2Code = h2Code;
    this.streamId = streamId;
  }

  get connectionError(): boolean {
    return this.streamId === 0;
  }
}
