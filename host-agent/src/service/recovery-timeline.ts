/**
 * Where a recovering replica's time went, step by step: when it knew its peers' current keys and
 * their session halves, entered its first view, fetched its state, saw a stable checkpoint, and
 * reported itself recovered. Logged as one line when it reports recovered, so that a T_transfer
 * that runs long shows which step took it (the board sees only the total).
 */
import type { ReplicaAction } from "../replica/replica-state.js";

interface Step {
  atMs: number;
  seq: number;
}

export class RecoveryTimeline {
  private readonly keys = new Map<string, number>();
  private readonly sessions = new Map<string, number>();
  private view: { view: number; atMs: number } | undefined;
  private transferStarted: Step | undefined;
  private transferred: Step | undefined;
  private stable: Step | undefined;
  private done = false;

  /**
   * On the clock the notes use: `startedAtMs`, when the replica began to start (its stored state
   * read, its core built: `builtAtMs`), and when it was listening and had dialed its peers
   * (`listeningAtMs`).
   */
  constructor(
    private readonly startedAtMs: number,
    private readonly builtAtMs?: number,
    private readonly listeningAtMs?: number,
  ) {}

  /** Notes an action of the replica's at `atMs`; returns the line to log once it has recovered. */
  note(action: ReplicaAction, atMs: number): string | undefined {
    if (this.done) return undefined;
    switch (action.type) {
      case "learned": {
        const known = action.what === "key" ? this.keys : this.sessions;
        if (!known.has(action.host)) known.set(action.host, atMs);
        return undefined;
      }
      case "view":
        this.view ??= { view: action.view, atMs };
        return undefined;
      case "transfer-started":
        this.transferStarted ??= { seq: action.seq, atMs };
        return undefined;
      case "transferred":
        this.transferred = { seq: action.seq, atMs };
        return undefined;
      case "stable":
        this.stable = { seq: action.seq, atMs };
        return undefined;
      case "recovered":
        this.done = true;
        return this.line(action.seq, atMs);
      default:
        return undefined;
    }
  }

  private line(seq: number, atMs: number): string {
    const at = (ms: number) => `+${Math.round(ms - this.startedAtMs)} ms`;
    /** The latest entry's time and whose it was: the peer that held the step up. */
    const last = (m: Map<string, number>) => {
      const [host, atMs] = [...m].reduce((a, b) => (b[1] > a[1] ? b : a));
      return `${at(atMs)} (${m.size}, the last ${host})`;
    };
    const parts: string[] = [];
    if (this.builtAtMs !== undefined) parts.push(`replica built ${at(this.builtAtMs)}`);
    if (this.listeningAtMs !== undefined) parts.push(`listening ${at(this.listeningAtMs)}`);
    if (this.keys.size > 0) parts.push(`peers' keys learned ${last(this.keys)}`);
    if (this.sessions.size > 0) parts.push(`their sessions ${last(this.sessions)}`);
    if (this.view !== undefined) parts.push(`view ${this.view.view} ${at(this.view.atMs)}`);
    if (this.transferStarted !== undefined)
      parts.push(
        `state of checkpoint ${this.transferStarted.seq} asked ${at(this.transferStarted.atMs)}`,
      );
    if (this.transferred !== undefined)
      parts.push(
        `state of checkpoint ${this.transferred.seq} installed ${at(this.transferred.atMs)}`,
      );
    if (
      this.stable !== undefined &&
      this.stable.seq === seq &&
      this.stable.seq !== this.transferred?.seq
    )
      parts.push(`checkpoint ${seq} stable ${at(this.stable.atMs)}`);
    parts.push(`recovered at checkpoint ${seq} ${at(atMs)}`);
    return `recovery steps since the start was asked: ${parts.join(", ")}`;
  }
}
