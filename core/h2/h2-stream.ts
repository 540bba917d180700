/**
 * One HTTP/2 stream's send and receive state: its flow-control windows,
 * body bytes waiting for window, and which sides have ended. The session
 * owns the connection; a stream only asks it to send frames. What the
 * stream's events mean (a request, a response, trailers) is its handler's
 * business.
 */

/** What a stream asks of its connection (the H2Session). */
export interface StreamConnection {
  sendHeaders(stream: H2Stream, fields: string[], endStream: boolean): void;
  sendData(stream: H2Stream, chunk: Buffer, endStream: boolean): boolean;
  endStream(stream: H2Stream, chunk: Buffer | undefined, trailers: string[] | undefined): void;
  resetStream(stream: H2Stream, code: number): void;
  consumed(stream: H2Stream, bytes: number): void;
}

/** What a stream reports to whoever uses it: the server's request, the client's attempt. */
export interface H2StreamHandler {
  /** A header block: the request or response head, informational heads, or trailers. */
  onStreamHeaders(stream: H2Stream, fields: string[], endStream: boolean): void;
  /** Body bytes. The receive window reopens only as the handler calls `stream.consumed()`. */
  onStreamData(stream: H2Stream, chunk: Buffer): void;
  /** The peer ended its side after DATA (an end on a header block comes with onStreamHeaders). */
  onStreamEnd(stream: H2Stream): void;
  /**
   * The stream is gone before both sides ended: the peer reset it (`code`),
   * or the connection failed (`err`). Called at most once; nothing follows.
   */
  onStreamReset(stream: H2Stream, code: number, err: Error | undefined): void;
  /** The stream can take more body after write() returned false. */
  onStreamDrain(stream: H2Stream): void;
  /** Both sides ended cleanly and everything we wrote is in the socket. */
  onStreamClose(stream: H2Stream): void;
}

export class H2Stream {
  readonly id: number;
  readonly session: StreamConnection;
  handler: H2StreamHandler;
  /** Bytes we may still send before the peer's WINDOW_UPDATE. */
  sendWindow: number;
  /** Bytes the peer may still send us. */
  recvWindow: number;
  /** Bytes the handler consumed that we have not yet returned in a WINDOW_UPDATE. */
  recvConsumed = 0;
  /** Body bytes handed to the handler that it has not consumed yet. */
  unread = 0;
  /** Server: when the peer opened it (monotonic ms), to tell a premature reset. */
  openedAt = 0;
  /** We sent END_STREAM (or it waits in `pending` behind flow control). */
  localEnded = false;
  /** The peer sent END_STREAM. */
  remoteEnded = false;
  /** Reset by either side, or the connection died. */
  reset = false;
  /** Body bytes waiting for window, in order. */
  pending: Buffer[] | undefined;
  /** Trailers to send once `pending` is out (encoded then, to keep HPACK in order). */
  pendingTrailers: string[] | undefined;
  /** END_STREAM waits behind `pending`. */
  pendingEnd = false;
  /** write() returned false: owes the handler a drain. */
  wantsDrain = false;

  constructor(
    id: number,
    session: StreamConnection,
    handler: H2StreamHandler,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.id = id;
    this.session = session;
    this.handler = handler;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Sends a header block; `endStream` ends our side with it. */
  sendHeaders(fields: string[], endStream: boolean): void {
    this.session.sendHeaders(this, fields, endStream);
  }

  /** Body bytes. False: wait for the handler's onStreamDrain. */
  write(chunk: Buffer): boolean {
    return this.session.sendData(this, chunk, false);
  }

  /** Ends our side, after `chunk` and then `trailers` when given. */
  end(chunk?: Buffer, trailers?: string[]): void {
    this.session.endStream(this, chunk, trailers);
  }

  /** Resets the stream (RST_STREAM with `code`); the handler hears nothing more. */
  cancel(code: number): void {
    this.session.resetStream(this, code);
  }

  /** The handler took `bytes` of body: the peer may send that much more. */
  consumed(bytes: number): void {
    this.session.consumed(this, bytes);
  }
}
