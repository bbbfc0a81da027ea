/**
 * A client's copies of its requests, as a real client sends them: each replica's carries a MAC
 * under the client's session with that replica, offered first (a replica started again answers
 * with its new half). What a test hands a core on the client's connection, and what the network
 * could replay later.
 */
import type { Signer } from "../src/replica/key-ring.js";
import {
  type ClientRequest,
  clientSessionSigningBytes,
  encodeClientMessage,
  parseEnvelope,
  requestFreshnessBytes,
} from "../src/replica/messages.js";
import type { ReplicaAction, ReplicaCore } from "../src/replica/replica-core.js";
import type { KeyAgreement } from "../src/replica/sessions.js";
import { Sessions } from "../src/replica/sessions.js";

export function clientCopier(
  client: string,
  signer: Signer,
  newKeyAgreement: () => KeyAgreement,
  sessionTs = 1_000,
) {
  const sessions = new Sessions(client, sessionTs, newKeyAgreement);
  const half = { client, ts: sessionTs, dh: sessions.publicKey };
  const offer = encodeClientMessage({
    type: "SESSION",
    ...half,
    sig: signer.sign(clientSessionSigningBytes(half)),
  });
  /** The copy of `request` for `core` (replica `to`), and what the core answered the offer with. */
  return (
    core: ReplicaCore,
    to: string,
    request: ClientRequest,
    nowMs: number,
  ): { message: Buffer; answers: ReplicaAction[] } => {
    const answers = core.onClientMessage(client, offer, nowMs);
    for (const a of answers) {
      if (a.type !== "reply") continue;
      const envelope = parseEnvelope(a.message);
      if (envelope?.body.type === "SESSION") sessions.learn(to, envelope.epoch, envelope.body.dh);
    }
    const mac = sessions.macNewest(to, requestFreshnessBytes(request));
    return {
      message: encodeClientMessage(
        mac === undefined ? { type: "REQUEST", request } : { type: "REQUEST", request, mac },
      ),
      answers,
    };
  };
}
