/** `smw deploy systemd` and `smw deploy config-txt`: what a board needs installed beside smw. */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { renderConfigTxt } from "../deploy/config-txt.js";
import { DeployError, systemdUnits } from "../deploy/systemd-units.js";
import { loadBoard } from "./load-board.js";

/** This installation's `bin/smw.js`. */
const installedSmw = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "bin",
  "smw.js",
);

export function deployCommand(context: CliContext): Command {
  const deploy = new Command("deploy").description(
    "what a board needs installed beside smw: systemd units, config.txt lines",
  );
  deploy
    .command("systemd")
    .description(
      "write the systemd units of a board's daemon and of the host agent it guards (print them without --out)",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "which board")
    .option("--out <dir>", "folder to write the units to (e.g. /etc/systemd/system)")
    .option(
      "--testbed-path <path>",
      "where the testbed file is on the board",
      "/etc/smw/testbed.yaml",
    )
    .option("--node <path>", "node on the board", "/usr/bin/node")
    .option("--smw <path>", "bin/smw.js on the board", installedSmw)
    .option(
      "--user <name>",
      "the services' user (the units add the groups: gpio, dialout, disk for the board; dialout for the agent)",
      "smw",
    )
    .option(
      "--watchdog <device>",
      "a hardware watchdog for the daemon to feed (e.g. /dev/watchdog)",
    )
    .option("--watchdog-sec <s>", "systemd restarts the daemon when not fed for this long", "10")
    .action(
      (options: {
        testbed: string;
        board: string;
        out?: string;
        testbedPath: string;
        node: string;
        smw: string;
        user: string;
        watchdog?: string;
        watchdogSec: string;
      }) => {
        const { testbed, board } = loadBoard(options.testbed, options.board);
        const watchdogSec = Number(options.watchdogSec);
        if (!Number.isInteger(watchdogSec) || watchdogSec < 2 || watchdogSec > 3600)
          throw new UsageError(
            `--watchdog-sec ${options.watchdogSec}: expected whole seconds from 2 to 3600`,
          );
        for (const [flag, value] of [
          ["--testbed-path", options.testbedPath],
          ["--node", options.node],
          ["--smw", options.smw],
        ] as const) {
          if (!path.posix.isAbsolute(value))
            throw new UsageError(`${flag} ${value}: systemd needs an absolute path`);
        }
        if (!/^[a-z_][a-z0-9_-]*$/.test(options.user))
          throw new UsageError(`--user ${options.user}: not a valid user name`);
        let units: ReturnType<typeof systemdUnits>;
        try {
          units = systemdUnits(testbed, board, {
            testbedPath: options.testbedPath,
            nodePath: options.node,
            smwPath: options.smw,
            user: options.user,
            watchdogSec,
            ...(options.watchdog === undefined ? {} : { watchdogDevice: options.watchdog }),
          });
        } catch (error) {
          if (error instanceof DeployError) throw new UsageError(error.message);
          throw error;
        }
        if (options.out === undefined) {
          context.io.out(units.map((u) => `# ${u.name}\n${u.text}`).join("\n"));
        } else {
          mkdirSync(options.out, { recursive: true });
          for (const unit of units) {
            writeFileSync(path.join(options.out, unit.name), unit.text, { mode: 0o644 });
            context.io.out(`wrote ${path.join(options.out, unit.name)}\n`);
          }
          context.io.out(
            `on the board: systemctl daemon-reload && systemctl enable --now ${units[0]?.name}; on host ${board.guards}: systemctl enable ${units[1]?.name}\n`,
          );
        }
        context.setExitCode(0);
      },
    );
  deploy
    .command("config-txt")
    .description(
      "print the config.txt lines that hold a board's GPIO lines at their safe levels from boot, and the pull resistors for the time before",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "which board")
    .action((options: { testbed: string; board: string }) => {
      const { testbed, board } = loadBoard(options.testbed, options.board);
      context.io.out(renderConfigTxt(board, testbed.name));
      context.setExitCode(0);
    });
  return deploy;
}
