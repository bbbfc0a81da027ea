/**
 * Where the replicated service finds its keys, from the testbed: each board's
 * public key (beside its signing key, NAME.pub for NAME.key) vouches for its
 * host's replica keys; the clients' public keys are in the testbed's client
 * key folder. Errors name the file and what to do.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  certificateSigningBytes,
  type KeyCertificate,
  type KeyLease,
  leaseSigningBytes,
  type Testbed,
} from "@smw/wiring";
import { publicKeyText, signerFor } from "../replica/ed25519.js";
import type { Signer } from "../replica/key-ring.js";

export class KeyFileError extends Error {}

function publicPathOf(privatePath: string): string {
  return privatePath.endsWith(".key") ? `${privatePath.slice(0, -4)}.pub` : `${privatePath}.pub`;
}

function readPublic(file: string, what: string): string {
  try {
    return publicKeyText(createPublicKey(readFileSync(file)));
  } catch (error) {
    throw new KeyFileError(`${file}: cannot read ${what}: ${(error as Error).message}`);
  }
}

function readPrivate(file: string, what: string): KeyObject {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (error) {
    throw new KeyFileError(`${file}: cannot read ${what}: ${(error as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new KeyFileError(`${file}: ${what} is readable by group or others; chmod 600 it`);
  try {
    return createPrivateKey(readFileSync(file));
  } catch (error) {
    throw new KeyFileError(`${file}: not a private key: ${(error as Error).message}`);
  }
}

/** Host id -> the public key of the board that guards it. */
export function boardPublicKeys(testbed: Testbed): Map<string, string> {
  const keys = new Map<string, string>();
  for (const board of testbed.boards)
    keys.set(
      board.guards,
      readPublic(publicPathOf(board.keys.signingPath), `board ${board.id}'s public key`),
    );
  return keys;
}

/**
 * Every board and client public key that reads, and what is wrong with each one that does not:
 * for a check that reports every problem at once (`smw host doctor`), where the replica's start
 * stops at the first (`boardPublicKeys`, `clientPublicKeys`).
 */
export function surveyPublicKeys(testbed: Testbed): {
  boardKeys: Map<string, string>;
  clientKeys: Map<string, string>;
  problems: string[];
} {
  const problems: string[] = [];
  const boardKeys = new Map<string, string>();
  for (const board of testbed.boards)
    try {
      boardKeys.set(
        board.guards,
        readPublic(publicPathOf(board.keys.signingPath), `board ${board.id}'s public key`),
      );
    } catch (error) {
      problems.push((error as Error).message);
    }
  const clientKeys = new Map<string, string>();
  const dir = testbed.clientKeysDir;
  let names: string[] = [];
  try {
    names = dir === undefined ? [] : readdirSync(dir).filter((n) => n.endsWith(".pub"));
  } catch (error) {
    problems.push(`${dir}: cannot list client keys: ${(error as Error).message}`);
  }
  for (const name of names)
    try {
      clientKeys.set(name.slice(0, -4), readPublic(path.join(dir as string, name), "a client key"));
    } catch (error) {
      problems.push((error as Error).message);
    }
  return { boardKeys, clientKeys, problems };
}

/** Client id -> public key, from the testbed's client key folder. */
export function clientPublicKeys(testbed: Testbed): Map<string, string> {
  const dir = testbed.clientKeysDir;
  if (dir === undefined)
    throw new KeyFileError(
      `${testbed.file}: no client keys: add "keys: { clients: FOLDER }" and put each client's public key there as <id>.pub (smw keys gen --out FOLDER --name <id>)`,
    );
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".pub"));
  } catch (error) {
    throw new KeyFileError(`${dir}: cannot list client keys: ${(error as Error).message}`);
  }
  const keys = new Map<string, string>();
  for (const name of names)
    keys.set(name.slice(0, -4), readPublic(path.join(dir, name), "a client key"));
  return keys;
}

/** A client's signer: its private key <clients folder>/<id>.key, or a given file. */
export function clientSigner(testbed: Testbed, id: string, keyFile?: string): Signer {
  const file =
    keyFile ?? (testbed.clientKeysDir ? path.join(testbed.clientKeysDir, `${id}.key`) : undefined);
  if (file === undefined)
    throw new KeyFileError(`${testbed.file}: no client key folder; pass --key FILE`);
  return signerFor(readPrivate(file, `client ${id}'s private key`));
}

/**
 * A certificate made with the board's signing key directly, for running a
 * replica where its board's key is at hand (a rig on one machine, a lab
 * bench). On a real testbed the board issues it over the host link.
 */
export function certifyWithBoardKey(
  testbed: Testbed,
  hostId: string,
  signer: Signer,
  period: number,
): KeyCertificate {
  const board = testbed.boards.find((b) => b.guards === hostId);
  if (board === undefined)
    throw new KeyFileError(`${testbed.file}: no board guards host ${hostId}`);
  const key = readPrivate(board.keys.signingPath, `board ${board.id}'s signing key`);
  const body = {
    host: hostId,
    board: board.id,
    period,
    publicKey: signer.publicKey,
    issuedAt: new Date().toISOString(),
  };
  return { ...body, signature: sign(null, certificateSigningBytes(body), key).toString("base64") };
}

/**
 * Leases on a host's key made with its board's signing key directly, where certificates are
 * (`certifyWithBoardKey`): each lasts the testbed's `keyLeaseMs` from the wall clock's now. With
 * no board to stop them, they go on for as long as the replica runs.
 */
export function leaseWithBoardKey(testbed: Testbed, hostId: string): (epoch: number) => KeyLease {
  const board = testbed.boards.find((b) => b.guards === hostId);
  if (board === undefined)
    throw new KeyFileError(`${testbed.file}: no board guards host ${hostId}`);
  const key = readPrivate(board.keys.signingPath, `board ${board.id}'s signing key`);
  return (epoch) => {
    const body = {
      host: hostId,
      board: board.id,
      epoch,
      // Whole milliseconds, as the wire takes them (a duration may have a fraction).
      notAfterMs: Math.floor(Date.now() + testbed.rejuvenation.keyLeaseMs),
    };
    return { ...body, signature: sign(null, leaseSigningBytes(body), key).toString("base64") };
  };
}
