/** `smw keys gen`: an Ed25519 key pair for the operator (or a board). */

import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { generateKeyPairFiles } from "../media/keys.js";
import { MediaError } from "../media/media-error.js";

export function keysCommand(context: CliContext): Command {
  const keys = new Command("keys").description("make and inspect signing keys");
  keys
    .command("gen")
    .description("generate an Ed25519 key pair: NAME.key (mode 0600) and NAME.pub")
    .requiredOption(
      "--out <dir>",
      "folder to write the key files to (created mode 0700 if missing)",
    )
    .option("--name <name>", "file name of the pair", "operator")
    .option("--force", "overwrite existing key files")
    .action((options: { out: string; name: string; force?: boolean }) => {
      try {
        const pair = generateKeyPairFiles(options.out, options.name, {
          force: options.force === true,
        });
        context.io.out(
          `private key ${pair.privateKeyPath} (mode 0600)\npublic key  ${pair.publicKeyPath}\nkey id      ${pair.keyId}\n`,
        );
        context.setExitCode(0);
      } catch (error) {
        if (error instanceof MediaError) throw new UsageError(error.message);
        throw error;
      }
    });
  return keys;
}
