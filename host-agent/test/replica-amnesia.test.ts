/**
 * A rejuvenated replica has forgotten what it voted (finding 1). Six real cores, n = 6, k' = 1,
 * k = 1, quorums of 4: a Byzantine primary gets batch A committed with the replica's vote before
 * its rejuvenation, then asks the rejuvenated replica and two replicas that never saw A to agree
 * on batch B at the same sequence number in the same view. Two quorums of 4 among 6 meet in 2
 * replicas: here the Byzantine one and the one that forgot. It must not vote until it is in a
 * view formed after its new key, and the service must still go on.
 */
import { describe, expect, it } from "vitest";
import { batchDigest, parseEnvelope, type ReplicaBody } from "../src/replica/messages.js";
import { decideNewView } from "../src/replica/new-view-decision.js";
import { quorumsFor } from "../src/replica/quorums.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { nullDigest } from "../src/replica/view-change.js";
import { bodiesOf, replicaCluster } from "./replica-cluster.js";
import { fourReplicas, viewChangeBody } from "./replica-harness.js";

const typeOf = (message: Buffer) =>
  (JSON.parse(message.toString("utf8").split("\n")[1] as string) as ReplicaBody).type;

const executedAt = (actions: readonly ReplicaAction[], seq: number) =>
  actions.filter((a) => a.type === "executed" && a.seq === seq) as Array<
    Extract<ReplicaAction, { type: "executed" }>
  >;

type ViewChange = Extract<ReplicaBody, { type: "VIEW_CHANGE" }>;

/**
 * n = 6: r6 comes back with a new key, and the view made fresh for it, 4, is led by r5, which
 * shows r6 (and only r6) its NEW_VIEW with its own VIEW_CHANGE claiming r6's old key epoch: r6
 * enters view 4 still amnesic. `editOwn` re-signs r5's VIEW_CHANGE among others, as r5 can.
 */
function r6InViewNotFreshForIt() {
  const c = replicaCluster(6, 1, 1);
  for (const id of c.ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
  c.run(300, () => true);
  const r6 = c.rejuvenate("r6", { recovering: true });
  const withheld = (m: { to: string; message: Buffer }) =>
    !(m.to === "r6" && ["NEW_VIEW", "CHECKPOINT", "EXECUTED"].includes(typeOf(m.message)));
  for (let i = 0; i < 300 && c.cores.get("r1")?.currentView === 0; i++) c.run(10, withheld);
  expect(c.cores.get("r5")?.currentView).toBe(4);
  const genuine = (c.sent.get("r5") ?? []).find(
    (a) => a.type === "broadcast" && typeOf(a.message) === "NEW_VIEW",
  ) as { message: Buffer };
  const body = parseEnvelope(genuine.message)?.body as Extract<ReplicaBody, { type: "NEW_VIEW" }>;
  const editOwn = (texts: readonly string[], edit: (vc: ViewChange) => ViewChange) =>
    texts.map((text) => {
      const vc = parseEnvelope(Buffer.from(text, "utf8"));
      return vc?.from !== "r5" ? text : c.speakAs("r5", edit(vc.body as ViewChange)).toString();
    });
  const stale = editOwn(body.viewChanges, (vc) => ({
    ...vc,
    keyEpochs: vc.keyEpochs.map((epoch, i) => (i === 5 ? 0 : epoch)),
  }));
  c.hand("r6", c.speakAs("r5", { ...body, viewChanges: stale }));
  return { c, r6, editOwn };
}

describe("a replica that lost its memory at rejuvenation", () => {
  it("does not vote where it may have voted before: a Byzantine primary cannot commit two batches at one sequence number", () => {
    const c = replicaCluster(6, 1, 1);
    const correct = ["r2", "r3", "r4", "r5", "r6"];
    for (const id of correct) c.boot(id, { recovering: false });
    c.deliver(() => false);
    const A = [c.request(1, { op: "put", key: "x", value: "A" })];
    const B = [c.request(2, { op: "put", key: "x", value: "B" })];
    const origin = c.originOf("r1");
    const slot = (requests: typeof A) => ({
      view: 0,
      seq: 1,
      digest: batchDigest(origin, requests),
    });
    // The client sent both requests to every replica (a backup votes only for requests its
    // clients sent it).
    for (const id of correct) for (const request of [...A, ...B]) c.fromClient(id, request);

    // 1. r1, the Byzantine primary of view 0, gets A committed by r2, r3 and r4 (and itself).
    const first = new Set(["r2", "r3", "r4"]);
    const prePrepareA = c.speakAs("r1", { type: "PRE_PREPARE", ...slot(A), origin, requests: A });
    for (const id of first) c.hand(id, prePrepareA);
    for (const id of ["r3", "r4"]) c.hand(id, c.speakAs("r1", { type: "COMMIT", ...slot(A) }));
    c.deliver((m) => first.has(m.from) && first.has(m.to));
    for (const id of ["r3", "r4"]) expect(c.cores.get(id)?.readValue("x")).toBe("A");

    // 2. r2 is rejuvenated: a new key, a clean host, no memory of its PREPARE and COMMIT for A.
    const r2 = c.rejuvenate("r2", { recovering: true });
    expect(r2.isAmnesic).toBe(true);
    const sentBefore = c.sent.get("r2")?.length ?? 0;
    // Its new key reaches everyone; r3 (and the Byzantine r1) vouch for the genesis checkpoint.
    const genesis = (c.cores.get("r5") as typeof r2).stableCheckpoint;
    c.hand("r2", c.speakAs("r1", { type: "CHECKPOINT", ...genesis }));
    c.deliver(
      (m) =>
        (m.from === "r2" && typeOf(m.message) === "NEW_KEY") ||
        (m.from === "r2" && m.to === "r3") ||
        (m.from === "r3" && m.to === "r2"),
    );
    expect(r2.status).toBe("normal");
    // The client, still waiting for B, sends it again: the rejuvenated r2 has it from its client.
    c.fromClient("r2", B[0] as (typeof B)[number]);

    // 3. r1 proposes B at the same sequence number in the same view to r2, r5 and r6.
    const second = new Set(["r2", "r5", "r6"]);
    const prePrepareB = c.speakAs("r1", { type: "PRE_PREPARE", ...slot(B), origin, requests: B });
    for (const id of second) c.hand(id, prePrepareB);
    for (const id of second) c.hand(id, c.speakAs("r1", { type: "COMMIT", ...slot(B) }));
    c.deliver((m) => second.has(m.from) && second.has(m.to));

    const sinceRejuvenation = (c.sent.get("r2") ?? []).slice(sentBefore);
    expect(bodiesOf(sinceRejuvenation, "PREPARE")).toEqual([]);
    expect(bodiesOf(sinceRejuvenation, "COMMIT")).toEqual([]);
    for (const id of correct) expect(c.cores.get(id)?.readValue("x")).not.toBe("B");

    // 4. r1 falls silent; the network among the correct five heals. They change views without
    // r2; r2 votes again in the view formed after its new key, and recovers. A is what every
    // correct replica executes at seq 1.
    c.run(20_000, (m) => m.from !== "r1" && m.to !== "r1");
    expect(r2.isAmnesic).toBe(false);
    expect(r2.isRecovered).toBe(true);
    for (const id of correct) {
      const core = c.cores.get(id) as typeof r2;
      expect(core.executedUpTo, id).toBeGreaterThanOrEqual(1);
      for (const e of executedAt(c.sent.get(id) ?? [], 1))
        expect(e.digest, `${id} at seq 1`).toBe(batchDigest(origin, A));
    }
    // r2 took the state at a checkpoint above seq 1 (it never executed seq 1 itself): A is in it.
    expect(r2.stableCheckpoint.seq).toBeGreaterThanOrEqual(1);
    const digests = new Set(
      correct
        .map((id) => c.cores.get(id) as typeof r2)
        .filter((core) => core.executedUpTo === r2.executedUpTo)
        .map((core) => core.stateDigest()),
    );
    expect(digests.size).toBe(1);
  });

  it("as the primary of the next view, forms it from the others' VIEW_CHANGEs and votes again in it", () => {
    const { core, from } = fourReplicas("r2", {}, { recovering: true });
    expect(core.isAmnesic).toBe(true);
    const genesis = core.stableCheckpoint;
    // Two peers vouch for the checkpoint it holds: its state is good, its memory of votes is not.
    core.onMessage(from("r1", { type: "CHECKPOINT", ...genesis }), 1);
    core.onMessage(from("r3", { type: "CHECKPOINT", ...genesis }), 2);
    expect(core.status).toBe("normal");
    // r1, r3 and r4 change to view 1, whose primary is r2, holding r2's key.
    let sent: ReplicaAction[] = [];
    for (const [i, id] of ["r1", "r3", "r4"].entries())
      sent = sent.concat(core.onMessage(from(id, viewChangeBody(1, genesis)), 3 + i));
    expect(bodiesOf(sent, "VIEW_CHANGE")).toEqual([]);
    expect(bodiesOf(sent, "NEW_VIEW")).toHaveLength(1);
    expect(core.currentView).toBe(1);
    expect(core.isAmnesic).toBe(false);
  });

  it("that entered its fresh view by a NEW_VIEW not fresh for it (an equivocating primary's) votes again by its peers' copy", () => {
    // n = 6: r6 comes back with a new key; the view made fresh for it, 4, is led by Byzantine
    // r5, which shows the others a NEW_VIEW fresh for r6 and r6 one in which r5's own
    // VIEW_CHANGE claims r6's old key. r6 enters view 4 still amnesic; the others, whose view is
    // fresh for r6, start no view change for it. Their copy of the view's NEW_VIEW, sent when
    // r6's STATUS shows it amnesic in their view, is the one it re-enters the view with.
    const { r6, c } = r6InViewNotFreshForIt();
    expect(r6.currentView).toBe(4);
    expect(r6.isAmnesic).toBe(true);
    // From now on every message flows, r5's own included.
    c.run(3_000, () => true);
    expect(r6.currentView).toBe(4);
    expect(r6.isAmnesic).toBe(false);
    expect(r6.isRecovered).toBe(true);
  });

  it("drops another NEW_VIEW for its view that is not fresh for it before checking any signature", () => {
    // r5, the view's primary, could re-sign its own VIEW_CHANGE in endless variants, each passing
    // every check. Here one such variant, not fresh for r6, carries a VIEW_CHANGE of r1's with
    // another's signature: had r6 checked signatures first, it would have found it.
    const { c, r6, editOwn } = r6InViewNotFreshForIt();
    const genuine = (c.sent.get("r5") ?? []).find(
      (a) => a.type === "broadcast" && typeOf(a.message) === "NEW_VIEW",
    ) as { message: Buffer };
    const body = parseEnvelope(genuine.message)?.body as Extract<ReplicaBody, { type: "NEW_VIEW" }>;
    const variant = editOwn(body.viewChanges, (vc) => ({
      ...vc,
      keyEpochs: vc.keyEpochs.map((epoch, i) => (i === 5 ? 0 : epoch)),
      suspects: ["c3"],
    }));
    const sigOf = (text: string) => text.split("\n")[0]?.split(" ")[3] as string;
    const fromOf = (text: string) => parseEnvelope(Buffer.from(text, "utf8"))?.from;
    const r2Sig = sigOf(variant.find((t) => fromOf(t) === "r2") as string);
    const forged = variant.map((text) =>
      fromOf(text) === "r1" ? text.replace(sigOf(text), r2Sig) : text,
    );
    const before = (c.sent.get("r6") ?? []).length;
    c.hand("r6", c.speakAs("r5", { ...body, viewChanges: forged }));
    const after = (c.sent.get("r6") ?? []).slice(before);
    expect(after.filter((a) => a.type === "problem")).toEqual([]);
    expect(r6.counters.get("new-view.not-fresh-here")).toBe(1);
    expect(r6.isAmnesic).toBe(true);
  });

  it("re-entering its view with a second NEW_VIEW, keeps no commit certificate of the first for the batch the second fixes", () => {
    // As above, r6 enters view 4 by Byzantine r5's NEW_VIEW that is not fresh for it. A write
    // commits at r6 at seq 2 but waits there for seq 1, whose messages to r6 are lost. Then r5
    // shows r6 a third NEW_VIEW for view 4, fresh for it, in which r5's own VIEW_CHANGE claims a
    // batch prepared at seq 2 in view 3: that pushes the decision to the null batch at seqs 1
    // and 2, and it checks out. Kept through the re-entry, slot 2's commits for the write stood
    // for the null batch: r6 executed null at seq 2 where every correct replica executed the write.
    const { r6, c, editOwn } = r6InViewNotFreshForIt();
    const bodyOf = (m: Buffer) => parseEnvelope(m)?.body as ReplicaBody;
    const withheld =
      (...types: string[]) =>
      (m: { to: string; message: Buffer }) =>
        m.to !== "r6" || !types.includes(typeOf(m.message));
    c.run(300, withheld("NEW_VIEW", "EXECUTED"));
    expect(r6.isAmnesic).toBe(true);
    const lossy = (m: { to: string; message: Buffer }) => {
      if (m.to !== "r6") return true;
      const b = bodyOf(m.message);
      if (["NEW_VIEW", "EXECUTED", "CHECKPOINT", "STATUS"].includes(b.type)) return false;
      return !("seq" in b && b.seq === 1 && b.type !== "CHECKPOINT");
    };
    for (const [ts, value] of [
      [1, "one"],
      [2, "two"],
    ] as const) {
      const write = c.request(ts, { op: "put", key: "x", value });
      for (const id of c.ids) c.fromClient(id, write);
      c.deliver(lossy);
    }
    // The others' VIEW_CHANGEs for view 4, r5's claiming a batch prepared at seq 2 in view 3.
    const texts: string[] = [];
    for (const id of ["r1", "r2", "r3", "r4", "r5"]) {
      const vc = (c.sent.get(id) ?? []).find((a) => {
        if (a.type !== "broadcast") return false;
        const b = bodyOf(a.message);
        return b.type === "VIEW_CHANGE" && b.newView === 4;
      }) as { message: Buffer } | undefined;
      if (vc !== undefined) texts.push(vc.message.toString("utf8"));
    }
    const claimed = [c.request(9, { op: "put", key: "y", value: "X" })];
    const digest = batchDigest(c.originOf("r5"), claimed);
    const lying = editOwn(texts, (vc) => ({
      ...vc,
      prepared: [...vc.prepared, { seq: 2, view: 3, digest }],
      prePrepared: [...vc.prePrepared, { seq: 2, view: 3, digest }],
      batches: [...vc.batches, { digest, origin: c.originOf("r5"), requests: claimed }],
    }));
    const decision = decideNewView(
      lying.map((t) => parseEnvelope(Buffer.from(t, "utf8"))?.body as ViewChange),
      quorumsFor(6, 1, 1),
      8,
      nullDigest(),
    );
    expect(decision).toBeDefined();
    c.hand(
      "r6",
      c.speakAs("r5", {
        type: "NEW_VIEW",
        view: 4,
        viewChanges: lying,
        checkpoint: decision?.checkpoint ?? { seq: 0, digest: "" },
        proposals: decision?.proposals ?? [],
      }),
    );
    expect(r6.isAmnesic).toBe(false);
    c.run(2_000, () => true);
    const executedAt2 = (id: string) =>
      (c.sent.get(id) ?? []).flatMap((a) =>
        a.type === "executed" && a.seq === 2 ? [a.digest] : [],
      );
    expect(executedAt2("r1")).toHaveLength(1);
    expect(executedAt2("r6")).toEqual(executedAt2("r1"));
  });
});

/** n replicas booted and settled, then `id` rejuvenated, holding none of `withoutKeysOf`'s keys. */
function withRejuvenated(
  [n, kPrime, k]: [number, number, number],
  id: string,
  withoutKeysOf: readonly string[] = [],
) {
  const c = replicaCluster(n, kPrime, k);
  for (const each of c.ids) c.boot(each, { recovering: false });
  c.deliver(() => true);
  c.run(300, () => true);
  return { c, back: c.rejuvenate(id, { recovering: true }, withoutKeysOf) };
}

/** `liar`'s NEW_VIEW with its own VIEW_CHANGE re-signed to claim key epoch 0 for replica `index`. */
function notFreshFor(
  c: ReturnType<typeof replicaCluster>,
  liar: string,
  index: number,
  message: Buffer,
): Buffer {
  const body = parseEnvelope(message)?.body as Extract<ReplicaBody, { type: "NEW_VIEW" }>;
  const viewChanges = body.viewChanges.map((text) => {
    const vc = parseEnvelope(Buffer.from(text, "utf8"));
    if (vc?.from !== liar) return text;
    const own = vc.body as ViewChange;
    const keyEpochs = own.keyEpochs.map((e, i) => (i === index ? 0 : e));
    return c.speakAs(liar, { ...own, keyEpochs }).toString("utf8");
  });
  return c.speakAs(liar, { ...body, viewChanges });
}

describe("a rejuvenated replica and a Byzantine primary of the view made fresh for it", () => {
  it("that shows everyone NEW_VIEWs not fresh for it: the next view is led by another primary", () => {
    // n = 6: r6 comes back; the view made fresh for it is led by r5 (its group is the one before
    // r6's). r5 forms every view it leads correctly, but re-signs its own VIEW_CHANGE in the
    // NEW_VIEW, to everyone, claiming r6's old key: the view is fresh for r6 nowhere. Were r5 the
    // leader of every view changed to for r6, that would go on for ever (600 view changes in a
    // minute) and r6 would never vote again, nor report itself recovered.
    const { c, back: r6 } = withRejuvenated([6, 1, 1], "r6");
    let lies = 0;
    c.run(5_000, (m) => {
      if (m.from !== "r5" || typeOf(m.message) !== "NEW_VIEW") return true;
      lies++;
      c.hand(m.to, notFreshFor(c, "r5", 5, m.message));
      return false;
    });
    expect(lies).toBeGreaterThan(0);
    expect(r6.isAmnesic).toBe(false);
    expect(r6.isRecovered).toBe(true);
    // One view for r6 led by r5, not fresh for it; then one led by another primary.
    const views = c.cores.get("r1")?.counters.get("view-change.for-amnesic") ?? 0;
    expect(views).toBeLessThanOrEqual(3);
    expect(c.cores.get("r1")?.primary).not.toBe("r5");
  });

  it("that never sends it anything: it learns that primary's key from the others, and enters the view", () => {
    // As a real replica starts: it holds no peer's certificate but learns each from its peers.
    // r5, Byzantine, leads the view made fresh for r6 correctly but sends r6 nothing at all: not
    // its NEW_KEY, not the NEW_VIEW. The others answer r6's KEY_QUERY with every key they hold,
    // and send the NEW_VIEW on with them: r6 can check it.
    const others = ["r1", "r2", "r3", "r4", "r5"];
    const { c, back: r6 } = withRejuvenated([6, 1, 1], "r6", others);
    c.run(5_000, (m) => !(m.from === "r5" && m.to === "r6"));
    expect(c.cores.get("r1")?.primary).toBe("r5");
    expect(r6.currentView).toBe(c.cores.get("r1")?.currentView);
    expect(r6.isAmnesic).toBe(false);
    expect(r6.isRecovered).toBe(true);
  });
});

describe("the view the others change to for a rejuvenated replica", () => {
  it("is the same at every correct replica, whatever each saw before", () => {
    // As above, Byzantine r5 forms the view made fresh for r6 (4) with its own VIEW_CHANGE
    // claiming r6's old key. r4 never got r6's STATUS before view 4 (it joined the view change
    // on the others' word), so only r1 to r3 changed views for r6 before. The next view for r6 is
    // read off the NEW_VIEW they all entered: the same for all. (Chosen by each one's own past,
    // r4 asked for view 10 and the others for 6, and they met only after timeouts.)
    const { c } = withRejuvenated([6, 1, 1], "r6");
    const r4 = c.cores.get("r4");
    const firstTarget = new Map<string, number>();
    c.run(2_000, (m) => {
      const body = parseEnvelope(m.message)?.body;
      if (m.from === "r6" && m.to === "r4" && body?.type === "STATUS")
        return (r4?.currentView ?? 0) > 0 && r4?.status === "normal";
      if (body?.type === "VIEW_CHANGE" && body.newView > 4 && !firstTarget.has(m.from))
        firstTarget.set(m.from, body.newView);
      if (m.from !== "r5" || body?.type !== "NEW_VIEW") return true;
      c.hand(m.to, notFreshFor(c, "r5", 5, m.message));
      return false;
    });
    expect(firstTarget.get("r1")).toBe(6);
    for (const id of ["r2", "r3", "r4"]) expect(firstTarget.get(id), id).toBe(6);
    expect(c.cores.get("r6")?.isRecovered).toBe(true);
  });

  it("is the same at a primary that entered its view before it held the replica's new key", () => {
    // The demo's case: r6 hands off to view 10 (led by r5, its group being the one before r6's),
    // and every VIEW_CHANGE for it holds r6's old key. r6 comes back with a new one, which r1 to
    // r4 learn before view 10's NEW_VIEW reaches them and r5, which formed that view, learns after.
    // The view is fresh for r6 nowhere. When each replica chose by when it learned the key, r1 to
    // r4 left r5 out and asked for view 12, and r5 asked for 16, its next own: it then refused
    // NEW_VIEW 12 as below its own VIEW_CHANGE, and stayed out of the view for good.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    c.shutDown("r1");
    c.run(1_000, () => true);
    expect(c.cores.get("r1")?.primary).toBe("r6");
    c.shutDown("r6");
    const heldNewView: Array<{ to: string; message: Buffer }> = [];
    c.run(100, (m) => {
      // r6's own VIEW_CHANGE is lost: signed with the key it is about to lose, it would leave
      // the others unable to check the NEW_VIEW once they learn its new one.
      if (m.from === "r6" && typeOf(m.message) === "VIEW_CHANGE") return false;
      if (m.from !== "r5" || typeOf(m.message) !== "NEW_VIEW") return m.to !== "r6";
      heldNewView.push(m);
      return false;
    });
    expect(c.cores.get("r5")?.currentView).toBe(10);
    expect(heldNewView.length).toBeGreaterThan(0);
    const r6 = c.rejuvenate("r6", { recovering: true });
    // r1 to r4 learn r6's new key; r5 hears nothing yet, nor r6 anything but from r6.
    c.deliver((m) => m.from === "r6" && m.to !== "r5" && typeOf(m.message) === "NEW_KEY");
    for (const id of ["r1", "r2", "r3", "r4"])
      expect(c.cores.get(id)?.keyEpochOf("r6"), id).toBe(1);
    expect(c.cores.get("r5")?.keyEpochOf("r6")).toBe(0);
    for (const m of heldNewView) c.hand(m.to, m.message);
    // For a while r5 hears only from r6: its key, and its STATUS saying it lost its memory.
    c.run(300, (m) => m.to !== "r5" || m.from === "r6");
    expect(c.cores.get("r5")?.keyEpochOf("r6")).toBe(1);
    c.run(5_000, () => true);
    // Each asked for the same view first.
    const firstAsked = ["r1", "r2", "r3", "r4", "r5"].map((id) =>
      (c.sent.get(id) ?? [])
        .flatMap((a) => {
          const body = a.type === "broadcast" ? parseEnvelope(a.message)?.body : undefined;
          return body?.type === "VIEW_CHANGE" && body.newView > 10 ? [body.newView] : [];
        })
        .at(0),
    );
    // View 10 was formed before r6's new key existed: no one's fault, so r5, whose group is the
    // one before r6's, leads again (view 16), for everyone.
    expect(firstAsked).toEqual([16, 16, 16, 16, 16]);
    const refused = (c.sent.get("r5") ?? []).filter(
      (a) => a.type === "problem" && a.kind === "below-own-view-change",
    );
    expect(refused).toEqual([]);
    const views = new Set(c.ids.map((id) => c.cores.get(id)?.currentView));
    expect(views.size).toBe(1);
    expect(r6.isAmnesic).toBe(false);
    expect(r6.isRecovered).toBe(true);
  });

  it("is not steered by a Byzantine replica that writes a key epoch no board certified into its VIEW_CHANGEs", () => {
    // n = 6: hand-offs take the views from 0 to 5, 10 (led by r5) and 15; r3, Byzantine, writes
    // epoch 99 for r6 into every VIEW_CHANGE it sends, and view 10 is formed with it. Then r6 comes
    // back with its real new key. Read off the highest epoch a view's VIEW_CHANGEs held, r5 (whose
    // group is the one before r6's) counted as a primary that had failed r6, and everyone asked
    // for view 18, led by r1, whose group goes down next: one more hand-off.
    const firstAsked = (pollute: boolean) => {
      const c = replicaCluster(6, 1, 1);
      for (const id of c.ids) c.boot(id, { recovering: false });
      c.deliver(() => true);
      c.run(300, () => true);
      const pass = (m: { from: string; to: string; message: Buffer }) => {
        const body = parseEnvelope(m.message)?.body;
        if (!pollute || m.from !== "r3" || body?.type !== "VIEW_CHANGE") return true;
        const keyEpochs = body.keyEpochs.map((e, i) => (i === 5 ? 99 : e));
        c.hand(m.to, c.speakAs("r3", { ...body, keyEpochs }));
        return false;
      };
      c.shutDown("r1");
      c.run(1_000, pass);
      // r1's and r2's VIEW_CHANGEs for view 10 are late at r5: it forms the view with r3's.
      c.shutDown("r6");
      const late = (m: { from: string; to: string; message: Buffer }) =>
        ["r1", "r2"].includes(m.from) && m.to === "r5" && typeOf(m.message) === "VIEW_CHANGE";
      c.run(1_000, (m) => !late(m) && pass(m));
      c.shutDown("r5");
      c.run(1_000, pass);
      expect(c.cores.get("r1")?.currentView).toBe(15);
      c.rejuvenate("r6", { recovering: true });
      c.run(3_000, () => true);
      return ["r1", "r2", "r4", "r5"].map((id) =>
        (c.sent.get(id) ?? [])
          .flatMap((a) => {
            const body = a.type === "broadcast" ? parseEnvelope(a.message)?.body : undefined;
            return body?.type === "VIEW_CHANGE" && body.newView > 15 ? [body.newView] : [];
          })
          .at(0),
      );
    };
    expect(firstAsked(false)).toEqual([16, 16, 16, 16]);
    expect(firstAsked(true)).toEqual([16, 16, 16, 16]);
  });

  it("costs one view change per rejuvenation in the usual course, not two", () => {
    // n = 6, hosts rejuvenated in id order, each recovering before the next goes down. The view
    // made fresh for one is led by the group before it, so it outlasts the next group's
    // shutdown: that group hands nothing off, and its own fresh view is the only change.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const viewsAtR1: number[] = [];
    for (const id of c.ids) {
      c.shutDown(id);
      c.run(300, () => true);
      const back = c.rejuvenate(id, { recovering: true });
      for (let i = 0; i < 300 && !back.isRecovered; i++) c.run(10, () => true);
      expect(back.isRecovered, id).toBe(true);
      if (id !== "r1") viewsAtR1.push(c.cores.get("r1")?.currentView ?? -1);
    }
    const views = (c.sent.get("r1") ?? []).filter((a) => a.type === "view");
    // The first rejuvenation hands off and then makes its view fresh (two); each other one, one.
    expect(views.length, JSON.stringify(viewsAtR1)).toBeLessThanOrEqual(2 + 5);
  });

  it("n = 11, k' = 2: is led by neither of two Byzantine primaries that take turns at views not fresh for it", () => {
    // r11 comes back; the group before its own is r9 and r10, both Byzantine, and each forms
    // every view it leads with its own VIEW_CHANGE claiming r11's old key. Excluding only the
    // current view's primary, the views would go to r9, then r10, then r9 again, for ever.
    const { c, back: r11 } = withRejuvenated([11, 2, 2], "r11");
    const primaries: string[] = [];
    c.run(8_000, (m) => {
      if (!["r9", "r10"].includes(m.from) || typeOf(m.message) !== "NEW_VIEW") return true;
      if (primaries.at(-1) !== m.from) primaries.push(m.from);
      c.hand(m.to, notFreshFor(c, m.from, 10, m.message));
      return false;
    });
    expect(primaries).toEqual(["r9", "r10"]);
    expect(r11.isAmnesic).toBe(false);
    expect(r11.isRecovered).toBe(true);
  });

  it("n = 11, k' = 2: is led by neither of two Byzantine primaries when one of them stays silent", () => {
    // As above, but r9 sends no NEW_VIEW at all: its views never form, so no NEW_VIEW shows it at
    // fault. The VIEW_CHANGEs of the view after say they asked for r9's and passed it over; k' + 1
    // of them (a correct one among them) count it at fault, at every replica alike. Without that,
    // the refreshes alternated between r9 and r10 (34 in 20 s, still amnesic at view 361).
    const { c, back: r11 } = withRejuvenated([11, 2, 2], "r11");
    c.run(8_000, (m) => {
      const type = typeOf(m.message);
      if (m.from === "r9" && type === "NEW_VIEW") return false;
      if (m.from !== "r10" || type !== "NEW_VIEW") return true;
      c.hand(m.to, notFreshFor(c, "r10", 10, m.message));
      return false;
    });
    expect(r11.isAmnesic).toBe(false);
    expect(r11.isRecovered).toBe(true);
    const refreshes = c.cores.get("r1")?.counters.get("view-change.for-amnesic") ?? 0;
    expect(refreshes).toBeLessThanOrEqual(4);
    expect(["r9", "r10"]).not.toContain(c.cores.get("r1")?.primary);
  });

  it("n = 11, k' = 2: is led by neither when the other sends NEW_VIEWs that do not follow instead of none", () => {
    // r9 proposes a slot above what its VIEW_CHANGEs allow: every replica refuses its NEW_VIEW and
    // asks for the next view at once, with no timeout. That too passes r9's view over.
    const { c, back: r11 } = withRejuvenated([11, 2, 2], "r11");
    let bad = 0;
    c.run(8_000, (m) => {
      const type = typeOf(m.message);
      if (m.from === "r9" && type === "NEW_VIEW") {
        const body = parseEnvelope(m.message)?.body as Extract<ReplicaBody, { type: "NEW_VIEW" }>;
        const top = Math.max(body.checkpoint.seq, ...body.proposals.map((p) => p.seq));
        const proposals = [...body.proposals, { seq: top + 1, digest: nullDigest() }];
        c.hand(m.to, c.speakAs("r9", { ...body, proposals }));
        bad++;
        return false;
      }
      if (m.from !== "r10" || type !== "NEW_VIEW") return true;
      c.hand(m.to, notFreshFor(c, "r10", 10, m.message));
      return false;
    });
    expect(bad).toBeGreaterThan(0);
    expect(r11.isAmnesic).toBe(false);
    expect(c.cores.get("r1")?.counters.get("view-change.for-amnesic") ?? 0).toBeLessThanOrEqual(4);
  });

  it("n = 11, k' = 2: is led by neither when both ask past the silent one's view and take the others along", () => {
    // r9 and r10 ask for the view after r9's at once, and the network holds the VIEW_CHANGEs for
    // r9's view from r2–r8 until someone asks for the next: only r1 times out, and with r9 and r10
    // it takes the others along. Those taken along pass r9's view over too, or fewer than k' + 1
    // would ever name it (34 refreshes in 20 s, r11 still amnesic, when only timeouts counted).
    const { c, back: r11 } = withRejuvenated([11, 2, 2], "r11");
    const slow = ["r2", "r3", "r4", "r5", "r6", "r7", "r8"];
    const held = new Map<number, { to: string; message: Buffer }[]>();
    const released = new Set<number>();
    c.run(8_000, (m) => {
      const type = typeOf(m.message);
      if (type === "VIEW_CHANGE") {
        const vc = parseEnvelope(m.message)?.body as ViewChange;
        const r9sView = vc.newView % 11 === 8;
        if (["r9", "r10"].includes(m.from)) {
          if (r9sView) c.hand(m.to, c.speakAs(m.from, { ...vc, newView: vc.newView + 1 }));
          return true;
        }
        if (m.from !== "r11" && r9sView && slow.includes(m.to) && !released.has(vc.newView)) {
          held.set(vc.newView, [...(held.get(vc.newView) ?? []), m]);
          return false;
        }
        if (vc.newView % 11 === 9 && held.has(vc.newView - 1)) {
          c.hand(m.to, m.message);
          for (const h of held.get(vc.newView - 1) ?? []) c.hand(h.to, h.message);
          held.delete(vc.newView - 1);
          released.add(vc.newView - 1);
          return false;
        }
        return true;
      }
      if (m.from === "r9" && type === "NEW_VIEW") return false;
      if (m.from !== "r10" || type !== "NEW_VIEW") return true;
      c.hand(m.to, notFreshFor(c, "r10", 10, m.message));
      return false;
    });
    expect(released.size).toBeGreaterThan(0);
    expect(r11.isAmnesic).toBe(false);
    expect(c.cores.get("r1")?.counters.get("view-change.for-amnesic") ?? 0).toBeLessThanOrEqual(4);
  });

  it("comes with keys the rejuvenated replica can check, the sender's own first", () => {
    // r6 starts holding no peer's key, and its KEY_QUERYs are all lost; r5 sends it nothing. A
    // peer sends it the view's NEW_VIEW with the keys it holds: its own NEW_KEY (taken unchecked)
    // and then KEYS, which r6 can check only once it holds that peer's key.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const r6 = c.rejuvenate(
      "r6",
      { recovering: true },
      c.ids.filter((id) => id !== "r6"),
    );
    const lost = (m: { from: string; to: string; message: Buffer }) =>
      !(m.from === "r6" && typeOf(m.message) === "KEY_QUERY") &&
      !(m.from === "r5" && m.to === "r6");
    c.run(3_000, lost);
    const refused = (c.sent.get("r6") ?? []).filter(
      (a) => a.type === "problem" && a.kind === "unknown-epoch" && a.detail.startsWith("KEYS"),
    );
    expect(refused).toEqual([]);
    expect(r6.isRecovered).toBe(true);
  });
});
