/**
 * Read-only operations without ordering (PBFT's read-only optimisation; SAFETY.md, "Reads
 * without ordering"). A replica answers a READ at once from its state after the last batch it
 * executed, naming that batch's sequence number and the one since which the result has held
 * (`read-since.ts`); the client takes a result only when a quorum q of replicas sent the same
 * result over intervals that meet, and orders the read otherwise.
 * Every other reply also needs q matching (`kv-client-core.ts`): a completed write is then
 * executed at q - k' correct replicas, one of which is in any later read's quorum.
 *
 * A replica whose state is not yet known good (recovering, in a cold start, fetching state)
 * does not answer: its state may be the one an intruder left on its disk.
 */

import { type ClientRead, type ReplicaBody, readDigest } from "./messages.js";
import type { ReplicaState } from "./replica-state.js";

/** `bytes`: the READ as received, which its answer names by digest. */
export function onRead(r: ReplicaState, client: string, read: ClientRead, bytes: Buffer): void {
  if (read.client !== client) {
    r.problem("bad-request", client, `a read for ${read.client}`);
    return;
  }
  if (!r.recoveredReported || r.mode === "recovering") {
    r.count("reads.not-answered");
    return;
  }
  r.count("reads.answered");
  const body: ReplicaBody = {
    type: "READ_REPLY",
    client,
    ts: read.ts,
    since: r.readSince.since(read.op),
    seq: r.lastExecuted,
    op: readDigest(bytes),
    result: r.store.read(read.op),
  };
  const messages = r.clientSessions?.seal(client, body, r.signer) ?? [r.seal(body)];
  let answerBytes = 0;
  for (const message of messages) {
    answerBytes += message.length;
    r.out.push({ type: "reply", client, message });
  }
  // Charged once made: a scan's size is known only now (`client-allowance.ts`).
  r.clientAllowance.charge(client, answerBytes, r.nowMs);
}
