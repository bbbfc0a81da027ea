/**
 * A cold start: after a fail-safe every board held its host in reset, so no replica remembers a
 * vote, and each finds on its disk its last checkpoints (up to k' + k of them written by a host
 * that was compromised, or being rejuvenated, when the testbed stopped). The replicas agree in a
 * first view change on the highest stored checkpoint that k' + k + 1 of them hold
 * (`decideNewView`), and each then starts from exactly that state: its own if it holds it,
 * otherwise fetched from those that do. A replica whose disk holds a later state goes back to
 * the agreed one: what was executed after it, and not stored by enough replicas, is lost, as in
 * any restart from stored checkpoints (SAFETY.md, "A cold start").
 */
import { KvStore } from "../kv/kv-store.js";
import { behind } from "./catch-up.js";
import { ClientTable } from "./client-table.js";
import type { SeqDigest } from "./messages.js";
import type { ReplicaState } from "./replica-state.js";
import { startViewChange } from "./view-change.js";

/** Released in a cold start: ask for the first view at once, offering what the disk holds. */
export function beginColdStart(r: ReplicaState): void {
  if (!r.coldStart) return;
  r.count("cold-start.began");
  startViewChange(r, r.view + 1);
}

/**
 * Entering its first view after a cold start, or any view decided from cold-start VIEW_CHANGEs
 * only (nothing has been executed in the new era then: `isColdStartSet`): the view's checkpoint
 * becomes the state, whatever was stored or settled on before.
 */
export function settleColdStart(r: ReplicaState, checkpoint: SeqDigest, vouchers: string[]): void {
  r.coldStart = false;
  r.out.push({ type: "cold-start-state", seq: checkpoint.seq, digest: checkpoint.digest });
  const own = r.ownCheckpoints.get(checkpoint.seq);
  if (own !== undefined && own.digest === checkpoint.digest) {
    r.count("cold-start.own-checkpoint");
    r.store = KvStore.fromSnapshot(own.snapshot);
    r.readSince.reset(checkpoint.seq);
    r.clients = ClientTable.from(own.clients);
    r.lastExecuted = checkpoint.seq;
    r.nextSeq = checkpoint.seq + 1;
    for (const seq of [...r.ownCheckpoints.keys()])
      if (seq > checkpoint.seq) r.ownCheckpoints.delete(seq);
    r.stable = { ...checkpoint };
    // Stored again, so a later cold start does not find a state no longer agreed on.
    r.out.push({ type: "checkpoint", ...own });
    return;
  }
  r.count("cold-start.transfer");
  // Nothing of its own is the agreed state: fetched whole from those that hold it (its stored
  // state only spares the partitions that happen to match).
  r.mode = "recovering";
  behind(r, checkpoint, vouchers);
  r.ownCheckpoints.clear();
  r.lastExecuted = 0;
}
