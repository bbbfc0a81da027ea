/**
 * The replica's key of this boot and its board's certificate, kept in the
 * host's state folder (the private key mode 0600) so the supervised replica
 * process, and a restart of it after a crash, use the key the board vouched for.
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { KeyCertificate } from "@smw/wiring";
import { publicKeyText } from "../replica/ed25519.js";

export interface ReplicaKeyFiles {
  keyFile: string;
  certificateFile: string;
}

export function keyFilesIn(stateDir: string): ReplicaKeyFiles {
  const dir = path.join(stateDir, "keys");
  return {
    keyFile: path.join(dir, "replica.key"),
    certificateFile: path.join(dir, "replica.cert.json"),
  };
}

/** A new key pair for this boot: written before the board is asked to certify it. */
export function newBootKey(files: ReplicaKeyFiles): { privateKey: KeyObject; publicKey: string } {
  mkdirSync(path.dirname(files.keyFile), { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const temporary = `${files.keyFile}.tmp`;
  writeFileSync(temporary, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  renameSync(temporary, files.keyFile);
  return { privateKey, publicKey: publicKeyText(publicKey) };
}

export function writeCertificate(files: ReplicaKeyFiles, certificate: KeyCertificate): void {
  const temporary = `${files.certificateFile}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(certificate, null, 2)}\n`);
  renameSync(temporary, files.certificateFile);
}

export function readReplicaKey(files: ReplicaKeyFiles): {
  privateKey: KeyObject;
  certificate: KeyCertificate;
} {
  if ((statSync(files.keyFile).mode & 0o077) !== 0)
    throw new Error(`${files.keyFile}: readable by group or others; chmod 600 it`);
  const privateKey = createPrivateKey(readFileSync(files.keyFile));
  const certificate = JSON.parse(readFileSync(files.certificateFile, "utf8")) as KeyCertificate;
  return { privateKey, certificate };
}
