/** `smw keys gen`: an Ed25519 key pair for the operator (or a board). */

import { formatProblem, loadTestbedFile } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { generateLinkKeys } from "../link/link-keys.js";
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
  keys
    .command("link")
    .description(
      "generate the pairwise control-link keys of a testbed into each board's link-key folder",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .option(
      "--out <dir>",
      "write DIR/<board>/<peer>.key instead, to copy to each board's link-key folder",
    )
    .option("--force", "overwrite existing link keys")
    .action((options: { testbed: string; out?: string; force?: boolean }) => {
      const loaded = loadTestbedFile(options.testbed);
      if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
      try {
        const written = generateLinkKeys(loaded.testbed, {
          force: options.force === true,
          ...(options.out === undefined ? {} : { outDir: options.out }),
        });
        context.io.out(
          `${written.length} link key files written (mode 0600), one per board and peer\n`,
        );
        context.setExitCode(0);
      } catch (error) {
        if (error instanceof MediaError) throw new UsageError(error.message);
        throw error;
      }
    });
  return keys;
}
