/**
 * Key epochs between replicas: the board certifies a new key at every rejuvenation (installKey),
 * revokes the keys of a group it begins rejuvenating (revokeKeys), and peers announce theirs
 * (NEW_KEY) or are asked for it when their messages name an epoch not yet seen (KEY_QUERY).
 * With each key epoch goes a session key agreement half (SESSION, signed under that epoch's key),
 * from which the normal case's MAC keys derive (`sessions.ts`).
 */

import type { KeyCertificate, KeyLease } from "@smw/wiring";
import { MAX_KEPT_SESSION_BYTES } from "./awaiting-keys.js";
import type { Signer } from "./key-ring.js";
import { type ClientSession, clientSessionSigningBytes } from "./messages.js";
import type { ReplicaState } from "./replica-state.js";
import { onNewView, refreshOwnViewChange } from "./view-change.js";

export function onNewKey(r: ReplicaState, from: string, certificate: KeyCertificate): void {
  if (certificate.host !== from) {
    r.problem("bad-certificate", from, `a certificate for ${certificate.host}`);
    return;
  }
  installCertificate(r, from, certificate);
}

/**
 * Certificates a peer relays (KEYS): each carries its board's signature, so whoever relays one
 * cannot forge it, and the ring refuses one older than what it holds or revoked.
 */
export function onKeys(
  r: ReplicaState,
  from: string,
  certificates: readonly KeyCertificate[],
): void {
  for (const certificate of certificates.slice(0, r.config.ids.length))
    if (certificate.host !== r.config.self && r.config.ids.includes(certificate.host))
      installCertificate(r, from, certificate, true);
}

/** `relayed`: from a peer's KEYS, which may not have heard of a revocation yet. */
function installCertificate(
  r: ReplicaState,
  from: string,
  certificate: KeyCertificate,
  relayed = false,
): void {
  const host = certificate.host;
  const verdict = r.ring.install(certificate);
  if (verdict === "installed") {
    r.count("keys.installed");
    r.out.push({ type: "learned", what: "key", host });
    // Its sessions were with its former key; its SESSION under the new one follows.
    r.sessions?.forget(host);
    // What it sent under that key before it was known here is taken again (`awaiting-keys.ts`).
    r.awaitingKeys.keyInstalled(host, certificate.period);
    retryNewViews(r);
    // What its former self asked for (under a key now stale) no longer speaks for it.
    r.viewChanges.delete(host);
    r.sessionWires.delete(host);
    refreshOwnViewChange(r);
  } else if (relayed && verdict === "revoked") r.count("keys.relayed-revoked");
  else if (verdict !== "same" && verdict !== "stale")
    // Relayed in KEYS, whose signature or MAC checked: its relayer is proven; in a NEW_KEY, read
    // unsigned, it is not.
    r.problem("bad-certificate", from, `certificate of ${host} refused: ${verdict}`, relayed);
}

/**
 * A VIEW_CHANGE that lacks keys this replica holds cannot be used to form a view with it (it
 * may not be fresh for a replica that lost its memory). Its sender may never hear of such a key
 * by itself: a silent Byzantine replica announces its new key to one replica only, and that
 * one's filter would then refuse every other VIEW_CHANGE. So the certificates it lacks go to it
 * (at most once per status interval per peer); it refreshes its VIEW_CHANGE on installing them.
 */
export function sendMissingKeys(r: ReplicaState, to: string, epochs: readonly number[]): void {
  if (to === r.config.self) return;
  const missing: KeyCertificate[] = [];
  r.config.ids.forEach((id, i) => {
    const held = r.ring.keyOf(id);
    if (held?.certificate !== undefined && (epochs[i] ?? -1) < held.epoch)
      missing.push(held.certificate);
  });
  if (missing.length === 0) return;
  const last = r.keysSentAtMs.get(to);
  if (last !== undefined && r.nowMs - last < r.config.statusIntervalMs) return;
  r.keysSentAtMs.set(to, r.nowMs);
  r.count("keys.relayed");
  r.send(to, { type: "KEYS", certificates: missing });
}

/** NEW_VIEWs that waited for keys, taken again (highest view first; most are then stale). */
function retryNewViews(r: ReplicaState): void {
  const waiting = [...r.newViewsAwaitingKeys].sort((a, b) => b[0] - a[0]);
  r.newViewsAwaitingKeys.clear();
  for (const [, { from, body, wire }] of waiting) onNewView(r, from, body, wire);
}

export function queryKey(r: ReplicaState, peer: string): void {
  const last = r.keyQueryAtMs.get(peer);
  if (last !== undefined && r.nowMs - last < r.config.statusIntervalMs) return;
  r.keyQueryAtMs.set(peer, r.nowMs);
  r.send(peer, { type: "KEY_QUERY" });
}

/** A new key pair, certified by the board at this rejuvenation. */
export function installKey(r: ReplicaState, certificate: KeyCertificate, signer: Signer): void {
  if (certificate.host !== r.config.self || certificate.publicKey !== signer.publicKey) {
    r.problem("bad-certificate", "board", "the certificate is not for this replica's key");
    return;
  }
  const verdict = r.ring.install(certificate);
  if (verdict !== "installed" && verdict !== "same") {
    r.problem("bad-certificate", "board", `certificate refused: ${verdict}`);
    return;
  }
  r.signer = signer;
  r.epoch = certificate.period;
  // Its board leases the new key from now on (the lease follows the certificate).
  r.lease = undefined;
  r.broadcast({ type: "NEW_KEY", certificate });
  // Sessions die with the key they were made under: a new half, and everyone asked for theirs.
  r.sessions?.renew(r.epoch);
  r.clientSessions?.renew(r.epoch);
  r.sessionSentAtMs.clear();
  announceSession(r, undefined, true);
  refreshOwnViewChange(r);
}

/** This epoch's SESSION to one peer or (to undefined) to all; `ask`: wanting theirs back. */
export function announceSession(r: ReplicaState, to: string | undefined, ask: boolean): void {
  if (r.sessions === undefined) return;
  const body = { type: "SESSION", dh: r.sessions.publicKey, ask } as const;
  if (to === undefined) r.broadcast(body);
  else r.send(to, body);
}

/**
 * A peer's SESSION, verified under its current key epoch: its half is kept for that epoch. One
 * that asks gets this replica's half back, as does a peer whose MACs fail here (it may hold an
 * old half of this replica's), at most once per status interval each.
 */
export function onSession(
  r: ReplicaState,
  from: string,
  epoch: number,
  body: { dh: string; ask: boolean },
  wire: Buffer,
): void {
  if (r.sessions === undefined) return;
  const had = r.sessions.has(from, epoch);
  if (r.sessions.learn(from, epoch, body.dh)) {
    r.out.push({ type: "learned", what: "session", host: from });
    // Only a half that makes a session where there was none: a peer that announces new halves
    // at will must not have what waits for one handled again each time.
    if (!had && r.sessions.has(from, epoch)) r.awaitingKeys.halfLearned(from, epoch);
    // Kept to pass on with this replica's keys (`relayKeys`); copied out of the pooled buffer.
    // Not a padded one (JSON takes any padding under the signature): a Byzantine peer would have
    // every correct replica send megabytes to whoever a forged KEY_QUERY names.
    if (wire.length <= MAX_KEPT_SESSION_BYTES)
      r.sessionWires.set(from, { epoch, wire: Buffer.from(wire) });
    else r.sessionWires.delete(from);
  }
  if (body.ask) sendSessionTo(r, from, false);
}

/** This replica's half to `peer` (asking for theirs if `ask`), at most once per status interval. */
export function sendSessionTo(r: ReplicaState, peer: string, ask: boolean): void {
  const last = r.sessionSentAtMs.get(peer);
  if (last !== undefined && r.nowMs - last < r.config.statusIntervalMs) return;
  r.sessionSentAtMs.set(peer, r.nowMs);
  announceSession(r, peer, ask);
}

/**
 * The boards began rejuvenating `hosts`: keys of theirs certified before `before` are revoked
 * here and now, not when their new keys arrive, so that from their shutdown on a key stolen
 * from a compromised host no longer speaks for a replica the quorums count as silent.
 */
export function revokeKeys(r: ReplicaState, hosts: readonly string[], before: number): void {
  for (const host of hosts)
    if (host !== r.config.self && r.config.ids.includes(host)) {
      r.ring.revoke(host, before);
      r.viewChanges.delete(host);
      r.sessionWires.delete(host);
      r.peerViews.delete(host);
      forgetUnsettledWordsOf(r, host);
      r.count("keys.revoked");
    }
}

/**
 * A revoked host's words for slots not yet settled here no longer count. For a slot not yet
 * prepared: its PRE_PREPARE as primary counts for neither attestation nor a prepared
 * certificate, and its PREPARE for neither. For a slot not yet committed: its COMMIT does not
 * count. Otherwise its words from before its reset, added to those of a replica the adversary
 * compromises after it, would be k' + 1 Byzantine voices at once: for a request no client sent,
 * or on both sides of an equivocating primary (SAFETY.md, "Key epochs"). What already made a
 * slot prepared or committed stays: that certificate was whole when it formed.
 */
function forgetUnsettledWordsOf(r: ReplicaState, host: string): void {
  for (const slot of r.slots.values()) {
    if (!slot.prepared) {
      if (r.primaryOf(slot.view) === host) slot.primaryRevoked = true;
      slot.prepares.delete(host);
    }
    if (!slot.committed) slot.commits.delete(host);
  }
  // Its EXECUTED reports: k' + 1 of them make a batch this replica executes.
  for (const byDigest of r.executedReports.values())
    for (const reporters of byDigest.values()) reporters.delete(host);
  // Its CHECKPOINT votes no longer count where k' + 1 decide (a state transfer towards one); they
  // still count towards a quorum, which needs more than 2k' (SAFETY.md, "Key epochs").
  for (const [seq, byDigest] of r.checkpointVotes)
    for (const voters of byDigest.values())
      if (voters.has(host)) {
        const revoked = r.revokedCheckpointVoters.get(seq) ?? new Set<string>();
        revoked.add(host);
        r.revokedCheckpointVoters.set(seq, revoked);
      }
}

/**
 * A peer asks for this replica's current key (it saw an epoch it did not know, or has just
 * started): its own, and those of every other replica it holds. A replica that has just started
 * learns each peer's key from that peer otherwise, and a Byzantine peer that never sends it its
 * own would keep it from checking every NEW_VIEW that peer's VIEW_CHANGE is in. Certificates
 * carry their boards' signatures: relaying them adds no trust.
 */
export function onKeyQuery(r: ReplicaState, from: string): void {
  relayKeys(r, from);
}

/**
 * This replica's certificate (NEW_KEY, which a peer takes unchecked) and then every other current
 * one it holds (KEYS, which the peer can check now), to `to`, at most once per status interval
 * (its questions come unchecked, from anyone claiming to be `to`).
 */
export function relayKeys(r: ReplicaState, to: string): void {
  const last = r.keysRelayedAtMs.get(to);
  if (last !== undefined && r.nowMs - last < r.config.statusIntervalMs) return;
  r.keysRelayedAtMs.set(to, r.nowMs);
  const own = r.ring.keyOf(r.config.self)?.certificate;
  if (own) r.send(to, { type: "NEW_KEY", certificate: own });
  const others = r.ring.certificates().filter((c) => c.host !== r.config.self && c.host !== to);
  if (others.length === 0) return;
  r.count("keys.relayed");
  r.send(to, { type: "KEYS", certificates: others });
  // And the SESSIONs its peers signed under those keys, as they sent them. A replica that has
  // just started otherwise learns each peer's half only when that peer's own connection to it is
  // up, 30-170 ms apart, while the peers, holding its new half already, MAC to it: what they
  // send waits for their halves. Signed by their owners, relaying them adds no trust.
  for (const [peer, { epoch, wire }] of r.sessionWires)
    if (peer !== to && r.ring.keyOf(peer)?.epoch === epoch)
      r.out.push({ type: "send", to, message: wire });
}

/**
 * The board vouches for this replica's current key a while longer (`KeyLease`): kept, and sent
 * to every client that asked for keys here, which counts this replica's replies only under a
 * lease it holds. A lease on another key (the one before, or the next one before its
 * certificate) is not passed on.
 */
export function installLease(r: ReplicaState, lease: KeyLease): void {
  if (lease.host !== r.config.self || lease.epoch !== r.epoch) {
    r.count("lease.not-current-key");
    return;
  }
  const verdict = r.ring.installLease(lease);
  if (verdict !== "installed") {
    r.count(`lease.${verdict}`);
    return;
  }
  r.lease = lease;
  if (r.leaseClients.size === 0) return;
  const message = r.seal({ type: "LEASE", lease });
  for (const client of r.leaseClients) r.out.push({ type: "reply", client, message });
}

/** A client asked for keys: the certificates held here, and this replica's lease if it has one. */
export function onClientKeysQuery(r: ReplicaState, client: string): void {
  if (r.ring.hasClient(client)) r.leaseClients.add(client);
  r.out.push({
    type: "reply",
    client,
    message: r.seal({ type: "KEYS", certificates: r.ring.certificates() }),
  });
  if (r.lease !== undefined && r.lease.epoch === r.epoch)
    r.out.push({ type: "reply", client, message: r.seal({ type: "LEASE", lease: r.lease }) });
}

/**
 * A client's session half, on its own authenticated connection and signed with its key: kept,
 * and answered with this replica's half (signed under its current epoch).
 */
export function onClientSession(r: ReplicaState, client: string, session: ClientSession): void {
  if (r.clientSessions === undefined) return;
  if (session.client !== client) {
    r.problem("bad-request", client, `a session half signed for ${session.client}`);
    return;
  }
  const { sig, type: _type, ...signed } = session;
  if (!r.ring.checkClient(client, clientSessionSigningBytes(signed), sig)) {
    r.problem("bad-signature", client, "a session half whose signature does not verify", true);
    return;
  }
  if (!r.clientSessions.learn(client, session.ts, session.dh, r.nowMs)) {
    r.count("client-session.not-answered");
    return;
  }
  r.out.push({ type: "reply", client, message: r.clientSessions.answer(client, r.signer) });
}
