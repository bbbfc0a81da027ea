/**
 * What a connection layer has moved and refused since it was made. Frames
 * count messages only (not hellos); bytes count everything on the wire,
 * prefixes and hellos included.
 */
export interface NetCounters {
  /** Message frames received and delivered. */
  framesIn: number;
  /** Message frames handed to a socket. */
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Incoming connections closed before a valid hello (malformed, unknown id, oversized, silent). */
  rejectedConnections: number;
  /** Frames whose stated length exceeded the maximum (each closes its connection). */
  oversizedFrames: number;
  /** Frames dropped unsent: a full queue, or a client with no connection. */
  droppedFrames: number;
  /** Dials after the first one of each outgoing link: retries after a failure or a loss. */
  reconnects: number;
  /**
   * Times a connection sent more than a turn's worth of frames at once and was paused for the
   * others (`framed-socket.ts` MAX_FRAMES_PER_TURN).
   */
  turnsYielded: number;
  /** Messages not sent because they were larger than a frame may be (`frameOrRefuse`). */
  framesTooLarge: number;
  /** Times a connection's input was held, its far end's messages to be dropped anyway (`holdInput`). */
  inputHolds: number;
}

export function zeroCounters(): NetCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    rejectedConnections: 0,
    oversizedFrames: 0,
    droppedFrames: 0,
    reconnects: 0,
    turnsYielded: 0,
    inputHolds: 0,
    framesTooLarge: 0,
  };
}
