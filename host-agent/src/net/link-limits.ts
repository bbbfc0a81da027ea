/**
 * The bounds shared by both ends of the connection layer (replicas and
 * clients), with their defaults, checked once when a node is made rather
 * than on the first connection.
 */
import { assertMaxFrameBytes, DEFAULT_MAX_FRAME_BYTES, encodeFrame } from "./frame-codec.js";
import { DEFAULT_HELLO_TIMEOUT_MS } from "./hello.js";
import {
  assertReconnectDelayMs,
  DEFAULT_RECONNECT_DELAY_MS,
  type ReconnectDelayMs,
} from "./reconnect-backoff.js";
import { DEFAULT_MAX_QUEUED_BYTES } from "./send-queue.js";

export interface LinkLimits {
  maxFrameBytes: number;
  reconnectDelayMs: ReconnectDelayMs;
  /** Per peer (or per client connection): encoded frames waiting to be written. */
  maxQueuedBytes: number;
  helloTimeoutMs: number;
}

export function resolveLinkLimits(options: Partial<LinkLimits>): LinkLimits {
  const limits: LinkLimits = {
    maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    reconnectDelayMs: { ...(options.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS) },
    maxQueuedBytes: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    helloTimeoutMs: options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
  };
  assertMaxFrameBytes(limits.maxFrameBytes);
  assertReconnectDelayMs(limits.reconnectDelayMs);
  if (!Number.isInteger(limits.maxQueuedBytes) || limits.maxQueuedBytes < 0)
    throw new RangeError(
      `the queue bound must be a whole number of bytes, not ${limits.maxQueuedBytes}`,
    );
  if (!Number.isFinite(limits.helloTimeoutMs) || limits.helloTimeoutMs <= 0)
    throw new RangeError(`helloTimeoutMs must be above 0, not ${limits.helloTimeoutMs}`);
  return limits;
}

/**
 * Refuses, loudly, a payload the other end would reject: sending it would
 * only get the connection closed and every frame queued behind it delayed.
 */
export function encodeBoundedFrame(payload: Buffer, maxFrameBytes: number): Buffer {
  if (payload.length > maxFrameBytes)
    throw new RangeError(
      `a payload of ${payload.length} bytes exceeds the ${maxFrameBytes}-byte frame maximum`,
    );
  return encodeFrame(payload);
}
