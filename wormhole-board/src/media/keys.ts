/**
 * Ed25519 key files in PEM (PKCS#8 private, SPKI public), so that openssl can
 * read them too. Private key files are written mode 0600 and refused when
 * group- or world-readable.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { MediaError } from "./media-error.js";

const MAX_KEY_FILE_BYTES = 16 * 1024;

export interface KeyPairPaths {
  privateKeyPath: string;
  publicKeyPath: string;
  keyId: string;
}

export function generateKeyPairFiles(
  outDir: string,
  name: string,
  options: { force?: boolean } = {},
): KeyPairPaths {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new MediaError(`key name "${name}": use letters, digits, ., - and _`);
  }
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const privateKeyPath = path.join(outDir, `${name}.key`);
  const publicKeyPath = path.join(outDir, `${name}.pub`);
  for (const file of [privateKeyPath, publicKeyPath]) {
    if (existsSync(file) && !options.force) {
      throw new MediaError(`${file} already exists; refusing to overwrite a key (use --force)`);
    }
  }
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  // Created 0600 from the first byte: never a moment when others could read it.
  const fd = openSync(privateKeyPath, options.force ? "w" : "wx", 0o600);
  try {
    writeFileSync(fd, privateKey.export({ type: "pkcs8", format: "pem" }));
  } finally {
    closeSync(fd);
  }
  writeFileSync(publicKeyPath, publicKey.export({ type: "spki", format: "pem" }), { mode: 0o644 });
  return { privateKeyPath, publicKeyPath, keyId: keyIdOf(publicKey) };
}

/**
 * The text of a secret file (a private key, a link key): refused when group
 * or others can read it, and bounded in size.
 */
export function readSecretFile(file: string, what: string, hint = ""): string {
  const fd = openKeyFile(file, what, hint);
  try {
    const stat = fstatSync(fd);
    if ((stat.mode & 0o077) !== 0) {
      throw new MediaError(
        `${file}: ${what} is readable by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}); run chmod 600 ${file}`,
      );
    }
    return readBounded(fd, file);
  } finally {
    closeSync(fd);
  }
}

export function readPrivateKey(file: string): KeyObject {
  const text = readSecretFile(file, "private key");
  try {
    const key = createPrivateKey(text);
    if (key.asymmetricKeyType !== "ed25519") throw new Error(`a ${key.asymmetricKeyType} key`);
    return key;
  } catch (error) {
    throw new MediaError(
      `${file}: not an Ed25519 private key in PEM (${(error as Error).message})`,
    );
  }
}

export function readPublicKey(file: string): KeyObject {
  const fd = openKeyFile(file, "public key");
  let text: string;
  try {
    text = readBounded(fd, file);
  } finally {
    closeSync(fd);
  }
  try {
    const key = createPublicKey(text);
    if (key.asymmetricKeyType !== "ed25519") throw new Error(`a ${key.asymmetricKeyType} key`);
    return key;
  } catch (error) {
    throw new MediaError(`${file}: not an Ed25519 public key in PEM (${(error as Error).message})`);
  }
}

/** Short fingerprint of a public key: the first 16 bytes of SHA-256 over its SPKI encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 32);
}

function openKeyFile(file: string, what: string, hint = ""): number {
  try {
    return openSync(file, "r");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MediaError(
      `${file}: cannot open ${what} (${code === "ENOENT" ? "no such file" : code})${hint}`,
    );
  }
}

function readBounded(fd: number, file: string): string {
  const stat = fstatSync(fd);
  if (!stat.isFile()) throw new MediaError(`${file}: not a regular file`);
  if (stat.size > MAX_KEY_FILE_BYTES)
    throw new MediaError(`${file}: ${stat.size} bytes is too large for a key file`);
  return readFileSync(fd, "utf8");
}
