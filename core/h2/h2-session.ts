/**
 * One HTTP/2 connection, client or server side (RFC 9113): the preface and
 * SETTINGS exchange, the frames the peer sends (header blocks through HPACK,
 * DATA within the windows we gave, PING, RST_STREAM, GOAWAY, WINDOW_UPDATE),
 * the streams' lifecycle and closing. What we send, and its flow control,
 * is the H2Writer's.
 *
 * Protocol errors follow the RFC: a stream error resets the stream, a
 * connection error sends GOAWAY with the code and closes the socket. The
 * peer's misbehaviour never throws out of a socket event.
 */

import type { Socket } from 'node:net';
import { monotonicMs } from '../clock.js';
import { H2Error, H2ErrorCode } from './h2-errors.js';
import { H2Stream, type H2StreamHandler, type StreamConnection } from './h2-stream.js';
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  FRAME_HEADER_LENGTH,
  FrameFlag,
  FrameReader,
  FrameType,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW_SIZE,
  SETTINGS_ACK,
  SettingId,
  goawayFrame,
  pingFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
  type FrameHandler,
} from './frames.js';
import { HpackDecoder } from './hpack.js';
import { H2Writer, type WriterOwner } from './h2-writer.js';

export interface H2SessionOptions {
  /** Streams the peer may open at once (server side; a client accepts none). */
  maxConcurrentStreams: number;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: body bytes one stream may have in flight to us. */
  streamWindow: number;
  /** Body bytes all streams together may have in flight to us. */
  connectionWindow: number;
  /** Decoded header bytes (RFC 9113 size rule) a block may carry. */
  maxHeaderListSize: number;
  /** After our side closed (GOAWAY and the last stream done), how long the peer has to close its side. */
  closeGraceMs?: number;
}

/** What the session tells whoever holds it (the server, the client pool). */
export interface H2SessionOwner {
  /** Server: a peer opened a stream with this request head. Return its handler. */
  onPeerStream?(session: H2Session, stream: H2Stream, fields: string[], endStream: boolean): void;
  /** A header block was too large to keep (SETTINGS_MAX_HEADER_LIST_SIZE). */
  onHeadersTooLarge?(session: H2Session, streamId: number): void;
  /** The peer's SETTINGS were applied (its MAX_CONCURRENT_STREAMS may have changed). */
  onPeerSettings?(session: H2Session): void;
  /** The peer will take no new streams (GOAWAY), or we stopped opening them. */
  onGoingAway?(session: H2Session): void;
  /** The socket closed; every stream has heard. */
  onSessionClose(session: H2Session, err: Error | undefined): void;
}

/**
 * Premature resets, Envoy's guard against rapid reset (CVE-2023-44487) and
 * MadeYouReset (CVE-2025-8671): a stream the peer resets within its first
 * second, or one we reset for the peer's protocol error. Once a connection
 * has opened this many streams, more than half of them premature ends it
 * with GOAWAY ENHANCE_YOUR_CALM. A ratio, not a count or a rate, so that a
 * long-lived connection with ordinary cancellations among its requests
 * lives on, however many it has had.
 */
const PREMATURE_RESET_MIN_STREAMS = 500;
const PREMATURE_RESET_LIFETIME_MS = 1000;
/** A header block's fragments may add up to this many times the header list limit (each frame counts 9 bytes more). */
const HEADER_BLOCK_FACTOR = 2;
/** How long a closing connection may take to finish before its socket is destroyed, unless the options say. */
const DEFAULT_CLOSE_GRACE_MS = 5000;
/** How long a connection error's GOAWAY may take to leave before the socket is destroyed. */
const FLUSH_GOAWAY_MS = 1000;

const NO_HANDLER: H2StreamHandler = {
  onStreamHeaders: () => undefined,
  onStreamData: () => undefined,
  onStreamEnd: () => undefined,
  onStreamReset: () => undefined,
  onStreamDrain: () => undefined,
  onStreamClose: () => undefined,
};

export class H2Session implements FrameHandler, StreamConnection, WriterOwner {
  readonly socket: Socket;
  readonly client: boolean;
  readonly #options: H2SessionOptions;
  readonly #owner: H2SessionOwner;
  readonly #reader: FrameReader;
  readonly #writer: H2Writer;
  readonly #decoder = new HpackDecoder();
  readonly streams = new Map<number, H2Stream>();
  /** Client: the next stream id to open. */
  #nextStreamId = 1;
  /** Server: the highest stream id the peer opened. */
  #lastPeerStreamId = 0;
  // Peer settings.
  #peerInitialWindow = DEFAULT_WINDOW_SIZE;
  /** Until the peer's SETTINGS say otherwise, what its owner expects (RFC 9113 sets no limit). */
  peerMaxConcurrentStreams = Infinity;
  #recvWindow: number;
  #recvConsumed = 0;
  /** Server: the 24-byte client preface is still to come (bytes of it seen so far). */
  #prefaceSeen: number;
  #settingsSeen = false;
  // A header block in progress (CONTINUATION).
  #blockStream = 0;
  #blockFlags = 0;
  #blockParts: Buffer[] | undefined;
  #blockBytes = 0;
  /** We sent GOAWAY: no new peer streams. */
  #goawaySent = false;
  /** The peer sent GOAWAY with this last stream id (-1: not yet). */
  #peerGoawayLast = -1;
  /** PINGs we sent that await their ACK, by payload. */
  readonly #pings = new Map<bigint, (err: Error | undefined) => void>();
  #pingCount = 0;
  /** Server: streams the peer opened, and how many of them ended in a premature reset. */
  #peerStreams = 0;
  #prematureResets = 0;
  /** When the bytes being handled were read (one clock read per socket read, not per frame). */
  #readAt = 0;
  /** Body bytes handed to stream handlers and not yet consumed, over all streams. */
  #unread = 0;
  /** Connection-window credit held back while `#unread` is over half the connection window. */
  #withheld = 0;
  #destroyed = false;
  /** Since when (monotonic ms) no stream is open; 0 while one is. */
  idleSince = monotonicMs();
  /** Client: attempts that will open a stream within this tick (their head waits for their body's shape). */
  reserved = 0;
  /** The error that ended the connection, for the streams' reports. */
  error: Error | undefined;

  constructor(socket: Socket, client: boolean, options: H2SessionOptions, owner: H2SessionOwner) {
    this.socket = socket;
    this.client = client;
    this.#options = options;
    this.#owner = owner;
    this.#reader = new FrameReader(this);
    this.#writer = new H2Writer(socket, this);
    this.#recvWindow = options.connectionWindow;
    this.#prefaceSeen = client ? CLIENT_PREFACE.length : 0;
    const settings: [number, number][] = [
      [SettingId.INITIAL_WINDOW_SIZE, options.streamWindow],
      [SettingId.MAX_HEADER_LIST_SIZE, options.maxHeaderListSize],
    ];
    if (client) settings.push([SettingId.ENABLE_PUSH, 0]);
    else settings.push([SettingId.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams]);
    if (client) this.#write(CLIENT_PREFACE);
    this.#write(settingsFrame(settings));
    if (options.connectionWindow > DEFAULT_WINDOW_SIZE) {
      this.#write(windowUpdateFrame(0, options.connectionWindow - DEFAULT_WINDOW_SIZE));
    }
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.#writer.drained(this.streams.values()));
    socket.on('error', (err: Error) => {
      this.error ??= err;
    });
    socket.on('close', () => this.#onClose());
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Open streams. */
  get active(): number {
    return this.streams.size;
  }

  /** No new streams may be opened on this connection. */
  get goingAway(): boolean {
    return this.#goawaySent || this.#peerGoawayLast >= 0 || this.#destroyed;
  }

  /** Client: streams opened on this connection so far. */
  get streamsOpened(): number {
    return (this.#nextStreamId - 1) / 2;
  }

  /** Client: can open another stream now. */
  get hasCapacity(): boolean {
    return !this.goingAway && this.streams.size + this.reserved < this.peerMaxConcurrentStreams;
  }

  // ---- Receiving ----

  /** Bytes from the socket (also the bytes a sniffer read first). */
  receive(chunk: Buffer): void {
    if (this.#destroyed) return;
    if (!this.client) this.#readAt = monotonicMs();
    try {
      if (this.#prefaceSeen < CLIENT_PREFACE.length) {
        const take = Math.min(CLIENT_PREFACE.length - this.#prefaceSeen, chunk.length);
        if (chunk.compare(CLIENT_PREFACE, this.#prefaceSeen, this.#prefaceSeen + take, 0, take) !== 0) {
          throw new H2Error(
            H2ErrorCode.PROTOCOL_ERROR,
            'the connection did not start with the HTTP/2 preface',
          );
        }
        this.#prefaceSeen += take;
        if (take === chunk.length) return;
        chunk = chunk.subarray(take);
      }
      this.#reader.push(chunk);
    } catch (err) {
      this.#fail(err);
    }
  }

  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.#destroyed) return;
    try {
      if (!this.#settingsSeen && type !== FrameType.SETTINGS) {
        throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'the first frame was not SETTINGS');
      }
      if (this.#blockParts !== undefined && type !== FrameType.CONTINUATION) {
        throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
      }
      switch (type) {
        case FrameType.DATA:
          this.#onData(flags, streamId, payload);
          break;
        case FrameType.HEADERS:
          this.#onHeaders(flags, streamId, payload);
          break;
        case FrameType.CONTINUATION:
          this.#onContinuation(flags, streamId, payload);
          break;
        case FrameType.PRIORITY:
          if (streamId === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
          if (payload.length !== 5)
            throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'PRIORITY is not 5 bytes', streamId);
          break;
        case FrameType.RST_STREAM:
          this.#onRstStream(streamId, payload);
          break;
        case FrameType.SETTINGS:
          this.#onSettings(flags, streamId, payload);
          break;
        case FrameType.PUSH_PROMISE:
          throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE, and push is disabled');
        case FrameType.PING:
          this.#onPing(flags, streamId, payload);
          break;
        case FrameType.GOAWAY:
          this.#onGoaway(streamId, payload);
          break;
        case FrameType.WINDOW_UPDATE:
          this.#onWindowUpdate(streamId, payload);
          break;
        default:
        // Unknown frame types are ignored (RFC 9113 section 4.1).
      }
    } catch (err) {
      if (err instanceof H2Error && !err.connectionError) this.#streamError(err);
      else this.#fail(err);
    }
  }

  #onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    const length = payload.length;
    if (length > this.#recvWindow) {
      throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    }
    this.#recvWindow -= length;
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.#isIdle(streamId))
        throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      // A stream we closed or reset, which the peer may not know yet: ignored (RFC 9113 5.4.2), not
      // answered, so that a peer cannot make us write for every frame it sends.
      this.#credit(length);
      return;
    }
    if (stream.remoteEnded) throw new H2Error(H2ErrorCode.STREAM_CLOSED, 'DATA after END_STREAM', streamId);
    if (length > stream.recvWindow) {
      throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the stream window', streamId);
    }
    stream.recvWindow -= length;
    const body = unpad(flags, payload);
    // Padding counts against the windows but is never the handler's to consume.
    const padding = length - body.length;
    stream.unread += body.length;
    this.#unread += body.length;
    // The connection window reopens as frames arrive, so that one stream's slow reader does not
    // hold up the others, until what waits unread over all streams reaches half the window: from
    // there it reopens only as bytes are read, so a connection holds at most 1.5 windows unread.
    if (this.#unread <= this.#options.connectionWindow >>> 1) this.#credit(length);
    else this.#withheld += length;
    if (padding > 0) {
      stream.unread += padding;
      this.#unread += padding;
      this.consumed(stream, padding);
    }
    const endStream = (flags & FrameFlag.END_STREAM) !== 0;
    if (endStream) stream.remoteEnded = true;
    if (body.length > 0) stream.handler.onStreamData(stream, body);
    if (endStream && !stream.reset) {
      stream.handler.onStreamEnd(stream);
      this.#maybeClose(stream);
    }
  }

  #onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let fragment = unpad(flags, payload);
    if ((flags & FrameFlag.PRIORITY) !== 0) {
      if (fragment.length < 5)
        throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      fragment = fragment.subarray(5);
    }
    if ((flags & FrameFlag.END_HEADERS) !== 0) {
      this.#onHeaderBlock(streamId, flags, fragment);
      return;
    }
    this.#blockStream = streamId;
    this.#blockFlags = flags;
    this.#blockParts = [fragment];
    this.#blockBytes = fragment.length + FRAME_HEADER_LENGTH;
  }

  #onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const parts = this.#blockParts;
    if (parts === undefined || streamId !== this.#blockStream) {
      throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without a header block before it');
    }
    if (payload.length > 0) parts.push(payload);
    // Each frame counts its header too: empty CONTINUATION frames are not free.
    this.#blockBytes += payload.length + FRAME_HEADER_LENGTH;
    if (this.#blockBytes > this.#options.maxHeaderListSize * HEADER_BLOCK_FACTOR) {
      throw new H2Error(H2ErrorCode.ENHANCE_YOUR_CALM, 'a header block grew past every limit');
    }
    if ((flags & FrameFlag.END_HEADERS) === 0) return;
    this.#blockParts = undefined;
    this.#onHeaderBlock(streamId, this.#blockFlags, Buffer.concat(parts));
  }

  #onHeaderBlock(streamId: number, flags: number, block: Buffer): void {
    // Decoded whatever becomes of the stream: the HPACK table must follow the peer's.
    const fields = this.#decoder.decode(block, this.#options.maxHeaderListSize);
    const endStream = (flags & FrameFlag.END_STREAM) !== 0;
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.client || !this.#isIdle(streamId)) {
        // A response to a stream we reset, or a closed one: nothing listens.
        if (!this.#isIdle(streamId)) return;
        throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}, which we never opened`);
      }
      this.#onNewPeerStream(streamId, fields, endStream);
      return;
    }
    if (stream.remoteEnded)
      throw new H2Error(H2ErrorCode.STREAM_CLOSED, 'HEADERS after END_STREAM', streamId);
    if (fields === undefined) {
      throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'trailers over the header size limit', streamId);
    }
    if (endStream) stream.remoteEnded = true;
    stream.handler.onStreamHeaders(stream, fields, endStream);
    if (endStream) this.#maybeClose(stream);
  }

  #onNewPeerStream(streamId: number, fields: string[] | undefined, endStream: boolean): void {
    if ((streamId & 1) === 0)
      throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `a client opened even stream ${streamId}`);
    this.#lastPeerStreamId = streamId;
    if (this.#goawaySent || this.streams.size >= this.#options.maxConcurrentStreams) {
      this.#writeControl(rstStreamFrame(streamId, H2ErrorCode.REFUSED_STREAM));
      return;
    }
    const stream = new H2Stream(
      streamId,
      this,
      NO_HANDLER,
      this.#peerInitialWindow,
      this.#options.streamWindow,
    );
    stream.openedAt = this.#readAt;
    this.#peerStreams++;
    if (endStream) stream.remoteEnded = true;
    this.#add(stream);
    if (fields === undefined) {
      this.#owner.onHeadersTooLarge?.(this, streamId);
      return;
    }
    try {
      this.#owner.onPeerStream?.(this, stream, fields, endStream);
    } catch {
      // A bug in the request's handler costs the request, not the connection's other streams.
      this.resetStream(stream, H2ErrorCode.INTERNAL_ERROR);
    }
  }

  #onRstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM is not 4 bytes');
    if (this.#isIdle(streamId))
      throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (!this.client && this.#readAt - stream.openedAt < PREMATURE_RESET_LIFETIME_MS && !this.#premature()) {
      // Rapid reset: streams opened only to be cancelled cost us work and the peer nothing.
      throw new H2Error(H2ErrorCode.ENHANCE_YOUR_CALM, 'too many streams reset');
    }
    this.#drop(stream);
    stream.handler.onStreamReset(stream, payload.readUInt32BE(0), undefined);
  }

  #onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & FrameFlag.ACK) !== 0) {
      if (payload.length !== 0)
        throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'a SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0)
      throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS is not a multiple of 6 bytes');
    this.#settingsSeen = true;
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.#writer.setHeaderTableSize(value);
          break;
        case SettingId.ENABLE_PUSH:
          // A server may not offer push to take (RFC 9113 6.5.2).
          if (value > 1 || (this.client && value !== 0)) {
            throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `ENABLE_PUSH ${value}`);
          }
          break;
        case SettingId.MAX_CONCURRENT_STREAMS:
          this.peerMaxConcurrentStreams = value;
          break;
        case SettingId.INITIAL_WINDOW_SIZE:
          if (value > MAX_WINDOW_SIZE)
            throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, `INITIAL_WINDOW_SIZE ${value}`);
          this.#setPeerInitialWindow(value);
          break;
        case SettingId.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) {
            throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value}`);
          }
          this.#writer.maxFrameSize = value;
          break;
        default:
        // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored.
      }
    }
    this.#writeControl(SETTINGS_ACK);
    this.#owner.onPeerSettings?.(this);
  }

  #setPeerInitialWindow(value: number): void {
    const delta = value - this.#peerInitialWindow;
    this.#peerInitialWindow = value;
    for (const stream of this.streams.values()) {
      stream.sendWindow += delta;
      if (stream.sendWindow > MAX_WINDOW_SIZE) {
        throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE overflowed a stream window');
      }
      if (delta > 0) this.#writer.flush(stream);
    }
  }

  #onPing(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
    if (payload.length !== 8) throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'PING is not 8 bytes');
    if ((flags & FrameFlag.ACK) === 0) {
      this.#writeControl(pingFrame(true, payload));
      return;
    }
    const key = payload.readBigUInt64BE(0);
    const callback = this.#pings.get(key);
    if (callback === undefined) return;
    this.#pings.delete(key);
    callback(undefined);
  }

  /** Sends a PING; `callback` runs when its ACK arrives, or with an error when the connection ends first. */
  ping(callback: (err: Error | undefined) => void): void {
    if (this.#destroyed) {
      process.nextTick(callback, this.error ?? new Error('the connection dropped'));
      return;
    }
    const key = BigInt(++this.#pingCount);
    const opaque = Buffer.allocUnsafe(8);
    opaque.writeBigUInt64BE(key, 0);
    this.#pings.set(key, callback);
    this.#write(pingFrame(false, opaque));
  }

  #onGoaway(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
    if (payload.length < 8) throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
    const last = payload.readUInt32BE(0) & 0x7fff_ffff;
    const first = this.#peerGoawayLast < 0;
    this.#peerGoawayLast = first ? last : Math.min(last, this.#peerGoawayLast);
    if (this.client) {
      // Streams past `last` were never processed: their requests are safe to send again elsewhere.
      for (const stream of [...this.streams.values()]) {
        if (stream.id <= this.#peerGoawayLast) continue;
        this.#drop(stream);
        stream.handler.onStreamReset(stream, H2ErrorCode.REFUSED_STREAM, undefined);
      }
    }
    if (first) this.#owner.onGoingAway?.(this);
    if (this.streams.size === 0) this.#endSocket();
  }

  #onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE is not 4 bytes');
    const increment = payload.readUInt32BE(0) & 0x7fff_ffff;
    if (streamId === 0) {
      if (increment === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0');
      this.#writer.addWindow(increment);
      return;
    }
    if (increment === 0) throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0', streamId);
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.#isIdle(streamId))
        throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW_SIZE) {
      throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, 'a stream window overflowed', streamId);
    }
    this.#writer.flush(stream);
  }

  /** Never opened by either side yet. */
  #isIdle(streamId: number): boolean {
    if (this.client) return (streamId & 1) === 1 ? streamId >= this.#nextStreamId : true;
    return (streamId & 1) === 1 ? streamId > this.#lastPeerStreamId : true;
  }

  // ---- Sending ----

  /** Client: opens a stream for `handler`. Callers check hasCapacity first. */
  openStream(handler: H2StreamHandler): H2Stream {
    if (this.goingAway) throw new H2Error(H2ErrorCode.REFUSED_STREAM, 'the connection is going away');
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    if (this.#nextStreamId > MAX_WINDOW_SIZE) {
      // Stream ids are spent: this connection finishes what it has and a new one takes over.
      this.close();
    }
    const stream = new H2Stream(id, this, handler, this.#peerInitialWindow, this.#options.streamWindow);
    this.#add(stream);
    return stream;
  }

  sendHeaders(stream: H2Stream, fields: string[], endStream: boolean): void {
    this.#writer.sendHeaders(stream, fields, endStream);
  }

  sendData(stream: H2Stream, chunk: Buffer, endStream: boolean): boolean {
    return this.#writer.sendData(stream, chunk, endStream);
  }

  endStream(stream: H2Stream, chunk: Buffer | undefined, trailers: string[] | undefined): void {
    this.#writer.endStream(stream, chunk, trailers);
  }

  /** The writer sent END_STREAM: the stream closes if the peer has ended too. */
  onLocalEnd(stream: H2Stream): void {
    this.#maybeClose(stream);
  }

  /** The handler took `bytes`: return them to the peer once enough add up. */
  consumed(stream: H2Stream, bytes: number): void {
    const taken = Math.min(bytes, stream.unread);
    if (taken <= 0) return;
    stream.unread -= taken;
    this.#release(taken);
    if (stream.reset || stream.remoteEnded || this.#destroyed) return;
    stream.recvConsumed += taken;
    if (stream.recvConsumed >= this.#options.streamWindow >>> 2) {
      this.#write(windowUpdateFrame(stream.id, stream.recvConsumed));
      stream.recvWindow += stream.recvConsumed;
      stream.recvConsumed = 0;
    }
  }

  /** Unread bytes left the connection (consumed, or their stream is gone). */
  #release(bytes: number): void {
    this.#unread -= bytes;
    if (this.#withheld > 0 && this.#unread <= this.#options.connectionWindow >>> 1) {
      const credit = this.#withheld;
      this.#withheld = 0;
      this.#credit(credit);
    }
  }

  /** Returns connection window to the peer, in WINDOW_UPDATEs of half the window or more. */
  #credit(bytes: number): void {
    this.#recvConsumed += bytes;
    if (this.#recvConsumed >= this.#options.connectionWindow >>> 1 && !this.#destroyed) {
      this.#write(windowUpdateFrame(0, this.#recvConsumed));
      this.#recvWindow += this.#recvConsumed;
      this.#recvConsumed = 0;
    }
  }

  resetStream(stream: H2Stream, code: number): void {
    if (stream.reset) return;
    // A reset for the peer's error (a body that disagrees with its content-length) counts as one of its resets.
    const peersFault = code === H2ErrorCode.PROTOCOL_ERROR || code === H2ErrorCode.FLOW_CONTROL_ERROR;
    if (!this.#destroyed && !(stream.localEnded && stream.remoteEnded)) {
      if (!this.#sendReset(stream.id, code, peersFault)) return;
    }
    this.#drop(stream);
  }

  #streamError(err: H2Error): void {
    const stream = this.streams.get(err.streamId);
    if (!this.#destroyed && !this.#sendReset(err.streamId, err.h2Code, true)) return;
    if (stream === undefined) return;
    this.#drop(stream);
    stream.handler.onStreamReset(stream, err.h2Code, err);
  }

  /** Counts a premature reset; false when the connection has had too many. */
  #premature(): boolean {
    this.#prematureResets++;
    return this.#peerStreams < PREMATURE_RESET_MIN_STREAMS || this.#prematureResets * 2 <= this.#peerStreams;
  }

  /**
   * RST_STREAM from us. `charged`: it answers the peer's misbehaviour, so it
   * spends the reset budget, and a peer that spends it all, or does not read
   * what we send, loses the connection (false).
   */
  #sendReset(streamId: number, code: number, charged: boolean): boolean {
    if (
      (charged && !this.client && !this.#premature()) ||
      !this.#writer.writeControl(rstStreamFrame(streamId, code))
    ) {
      this.#fail(new H2Error(H2ErrorCode.ENHANCE_YOUR_CALM, 'too many streams reset'));
      return false;
    }
    return true;
  }

  #add(stream: H2Stream): void {
    this.streams.set(stream.id, stream);
    if (this.streams.size === 1) this.idleSince = 0;
  }

  /** Takes a stream out: reset or closed. */
  #drop(stream: H2Stream): void {
    stream.reset = true;
    this.#writer.forget(stream);
    this.#forget(stream);
  }

  #forget(stream: H2Stream): void {
    if (!this.streams.delete(stream.id)) return;
    if (stream.unread > 0) {
      // Nobody will read what it held: that part of the connection window is free again.
      const unread = stream.unread;
      stream.unread = 0;
      this.#release(unread);
    }
    if (this.streams.size === 0) {
      this.idleSince = monotonicMs();
      if (this.goingAway) this.#endSocket();
    }
  }

  /** Forgets a stream both sides have ended, once what we wrote is out. */
  #maybeClose(stream: H2Stream): void {
    if (stream.reset || !stream.localEnded || stream.pending !== undefined) return;
    if (!stream.remoteEnded) {
      if (this.client) return;
      // The response is complete and the request is not: the client may stop sending (RFC 9113 8.1).
      this.#write(rstStreamFrame(stream.id, H2ErrorCode.NO_ERROR));
      stream.remoteEnded = true;
    }
    if (this.#forgetClosed(stream)) stream.handler.onStreamClose(stream);
  }

  #forgetClosed(stream: H2Stream): boolean {
    if (!this.streams.has(stream.id)) return false;
    this.#writer.forget(stream);
    this.#forget(stream);
    return true;
  }

  #write(buf: Buffer): void {
    this.#writer.write(buf);
  }

  /** A frame we owe the peer in answer to its own: a peer that sends them and reads no answers is cut off. */
  #writeControl(buf: Buffer): void {
    if (!this.#writer.writeControl(buf)) {
      throw new H2Error(H2ErrorCode.ENHANCE_YOUR_CALM, 'the peer sends control frames and reads no answers');
    }
  }

  // ---- Closing ----

  /** Graceful: GOAWAY now, the socket closes when the open streams are done. */
  close(): void {
    if (this.#destroyed || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#write(goawayFrame(this.client ? 0 : this.#lastPeerStreamId, H2ErrorCode.NO_ERROR, ''));
    this.#owner.onGoingAway?.(this);
    if (this.streams.size === 0) this.#endSocket();
  }

  /** Hard: every stream is reset with `err` and the socket destroyed. */
  destroy(err?: Error): void {
    if (this.#destroyed) return;
    if (err !== undefined) this.error ??= err;
    this.#resetAll();
    this.#destroyed = true;
    this.#writer.stopped = true;
    this.#reader.stop();
    this.socket.destroy();
  }

  #endSocket(): void {
    if (this.#destroyed) return;
    this.#writer.uncork();
    this.socket.end();
    // A peer that never closes its side does not keep the connection.
    setTimeout(destroySocket, this.#options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS, this.socket).unref();
  }

  /** The connection sat idle past its deadline: GOAWAY, or if that was already sent, the end. */
  idle(): void {
    if (this.goingAway) this.destroy();
    else this.close();
  }

  /** A connection error: GOAWAY with its code, then the socket goes. */
  #fail(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (!this.#destroyed && error instanceof H2Error) {
      this.#goawaySent = true;
      this.#write(goawayFrame(this.client ? 0 : this.#lastPeerStreamId, error.h2Code, error.message));
      this.#writer.uncork();
    }
    this.error ??= error;
    this.#resetAll();
    this.#destroyed = true;
    this.#writer.stopped = true;
    this.#reader.stop();
    // end(), not destroy(): the GOAWAY should reach the peer; a peer that reads nothing gets a second.
    this.socket.end();
    setTimeout(destroySocket, FLUSH_GOAWAY_MS, this.socket).unref();
  }

  #resetAll(): void {
    const pings = [...this.#pings.values()];
    this.#pings.clear();
    for (const callback of pings) callback(this.error ?? new Error('the connection dropped'));
    const streams = [...this.streams.values()];
    this.streams.clear();
    const err = this.error ?? new Error('the connection dropped');
    for (const stream of streams) {
      stream.reset = true;
      stream.pending = undefined;
      stream.handler.onStreamReset(stream, H2ErrorCode.INTERNAL_ERROR, err);
    }
  }

  #onClose(): void {
    if (!this.#destroyed) {
      this.#resetAll();
      this.#destroyed = true;
      this.#writer.stopped = true;
      this.#reader.stop();
    }
    this.#owner.onSessionClose(this, this.error);
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

/** The payload without its padding (PADDED flag). */
function unpad(flags: number, payload: Buffer): Buffer {
  if ((flags & FrameFlag.PADDED) === 0) return payload;
  if (payload.length < 1)
    throw new H2Error(H2ErrorCode.FRAME_SIZE_ERROR, 'a padded frame with no pad length');
  const pad = payload.readUInt8(0);
  if (pad >= payload.length) {
    throw new H2Error(H2ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
  }
  return payload.subarray(1, payload.length - pad);
}
