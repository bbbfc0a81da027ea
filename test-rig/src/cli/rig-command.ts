/** `smw rig demo|up|fault|measure|down` and the rig's internal programs (`smw rig board`, `smw rig byzantine-host`). */
import { existsSync } from "node:fs";
import path from "node:path";
import { formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { readPrivateKey } from "@smw/wormhole-board";
import { Command } from "commander";
import { runByzantineHost } from "../host/byzantine-host.js";
import { DEMO_LOAD } from "../load/client-load.js";
import { renderSummary } from "../report/run-report.js";
import { runBoardChild } from "../rig/board-child.js";
import { NamespaceNetwork } from "../rig/host-network.js";
import { ProcessRegistry } from "../rig/process-registry.js";
import { RUN_TESTBED, rigRunDir } from "../rig/run-folder.js";
import { CalibrationRefused, DEFAULT_CALIBRATION_MARGIN_PERCENT } from "../scenarios/calibrate.js";
import { runDemo } from "../scenarios/demo.js";
import { runMeasure } from "../scenarios/measure.js";
import { observeTestbed } from "../scenarios/observe.js";
import { runRig } from "../scenarios/rig-run.js";
import { addFaultCommand } from "./fault-command.js";
import { type LiveFlags, liveOptions, liveRunOption, withLive } from "./live-options.js";
import {
  DEFAULT_TESTBED,
  loadOptions,
  loadShape,
  netnsOption,
  onTheRig,
  percentage,
  positiveInt,
  promisesExitCode,
  runsOption,
} from "./rig-options.js";

/**
 * What an observer asks: a simulated testbed runs as its copy in the rig's run folder (whose
 * paths, such as the boards' status sockets, are inside it); any other testbed as it is.
 */
function observedTestbed(testbed: Testbed, flags: { testbed: string; runs?: string }): Testbed {
  if (!testbed.simulated) return testbed;
  const copy = path.join(rigRunDir(testbed.name, flags.runs), RUN_TESTBED);
  if (!existsSync(copy))
    throw new UsageError(
      `no rig has run ${flags.testbed} here (no ${copy}): start one with smw rig up --testbed ${flags.testbed}`,
    );
  const loaded = loadTestbedFile(copy);
  if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
  return loaded.testbed;
}

export function rigCommand(context: CliContext): Command {
  const rig = new Command("rig").description(
    "a whole simulated testbed on this machine: boards, hosts, PTY links, client load, faults",
  );

  liveOptions(loadOptions(netnsOption(rig.command("demo")), DEMO_LOAD), true)
    .description(
      "the 6-host rig under load, a Byzantine replica and a corrupted state planted, rejuvenation periods narrated, a report written",
    )
    .option("--testbed <file>", "a simulated testbed file", DEFAULT_TESTBED)
    .option("--periods <n>", "rejuvenation periods to run", "2")
    .option(
      "--keep-budgets",
      "run with the testbed's own step budgets (no calibration period measuring this machine first)",
    )
    .option(
      "--margin <percent>",
      "calibration: margin over the largest time measured of each step (procMax is added too)",
      String(DEFAULT_CALIBRATION_MARGIN_PERCENT),
    )
    .option("--out <dir>", "report folder (default: report/ in the rig's run folder)")
    .action(
      async (
        flags: {
          testbed: string;
          periods: string;
          keepBudgets?: boolean;
          margin: string;
          out?: string;
          netns?: boolean;
          runs?: string;
          clients: string;
          pauseMs: string;
        } & LiveFlags,
      ) => {
        const periods = positiveInt(flags.periods, "--periods");
        const marginPercent = percentage(flags.margin, "--margin");
        const shape = loadShape(flags);
        await withLive(flags, context, async (live) => {
          let result: Awaited<ReturnType<typeof runDemo>>;
          try {
            result = await onTheRig(() =>
              runDemo({
                testbedFile: flags.testbed,
                periods,
                marginPercent,
                loadShape: shape,
                ...(flags.keepBudgets ? { keepBudgets: true } : {}),
                ...(flags.runs === undefined ? {} : { runsDir: flags.runs }),
                ...(flags.netns ? { netns: true } : {}),
                ...(flags.out === undefined ? {} : { outDir: flags.out }),
                ...liveRunOption(live, flags),
                say: (line) => context.io.out(`${line}\n`),
              }),
            );
          } catch (error) {
            if (!(error instanceof CalibrationRefused)) throw error;
            // A negative verdict on this machine, not bad input: exit 1, as smw plan does.
            context.io.err(`smw rig demo: ${error.message}\n`);
            context.setExitCode(1);
            return;
          }
          const plan =
            result.calibration === undefined
              ? ""
              : `plan: ${path.join(result.reportDir, "plan.txt")} (budgets measured on this machine)\n`;
          context.io.out(
            `\n${renderSummary(result.summary)}\n${plan}report: ${result.reportDir}\n`,
          );
          context.setExitCode(promisesExitCode(result.summary));
        });
      },
    );

  liveOptions(loadOptions(netnsOption(rig.command("up"))), true)
    .description(
      "bring the rig up under load and keep it running, narrated, until Ctrl-C (or --periods N); faults from smw rig fault; then the report",
    )
    .option("--testbed <file>", "a simulated testbed file", DEFAULT_TESTBED)
    .option("--periods <n>", "stop after N rejuvenation periods (default: run until Ctrl-C)")
    .option("--no-load", "no client load")
    .option("--out <dir>", "report folder (default: report/ in the testbed's run folder)")
    .action(
      async (
        flags: {
          testbed: string;
          periods?: string;
          load: boolean;
          out?: string;
          netns?: boolean;
          runs?: string;
          clients: string;
          pauseMs: string;
        } & LiveFlags,
      ) => {
        const periods =
          flags.periods === undefined ? undefined : positiveInt(flags.periods, "--periods");
        const shape = loadShape(flags);
        await withLive(flags, context, async (live) => {
          const result = await onTheRig(() =>
            runRig({
              testbedFile: flags.testbed,
              title: "smw rig up",
              periods,
              load: flags.load,
              loadShape: shape,
              ...(flags.runs === undefined ? {} : { runsDir: flags.runs }),
              ...(flags.netns ? { netns: true } : {}),
              ...(flags.out === undefined ? {} : { outDir: flags.out }),
              ...liveRunOption(live, flags),
              say: (line) => context.io.out(`${line}\n`),
            }),
          );
          context.io.out(`\n${renderSummary(result.summary)}\nreport: ${result.reportDir}\n`);
          context.setExitCode(promisesExitCode(result.summary));
        });
      },
    );

  addFaultCommand(rig, context);

  liveOptions(netnsOption(rig.command("measure")), true)
    .description(
      "a timing campaign: N rejuvenation periods (the rig under load, or a running testbed observed), step timings, report, derived budgets (bounds.yaml)",
    )
    .option("--testbed <file>", "a testbed file", DEFAULT_TESTBED)
    .option("--cycles <n>", "rejuvenation periods to measure", "3")
    .option("--margin <percent>", "margin added to the largest measured value of each step", "25")
    .option(
      "--out <dir>",
      "report folder (default: report/ in the rig's run folder; required when observing)",
    )
    .option(
      "--observe",
      "do not bring a rig up: observe the testbed's running boards (implied for a testbed that is not simulated)",
    )
    .option(
      "--key <file>",
      "the operator's private key, to ask boards over the network (their operatorEndpoint)",
    )
    .action(
      async (
        flags: {
          testbed: string;
          cycles: string;
          margin: string;
          out?: string;
          observe?: boolean;
          key?: string;
          netns?: boolean;
          runs?: string;
        } & LiveFlags,
      ) => {
        const cycles = positiveInt(flags.cycles, "--cycles");
        const marginPercent = percentage(flags.margin, "--margin");
        const loaded = loadTestbedFile(flags.testbed);
        if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
        const say = (line: string) => context.io.out(`${line}\n`);
        let operatorKey: ReturnType<typeof readPrivateKey> | undefined;
        if (flags.observe || !loaded.testbed.simulated) {
          if (flags.out === undefined)
            throw new UsageError(
              "--out DIR: where the campaign's report goes (observing a running testbed)",
            );
          if (flags.key !== undefined) {
            try {
              operatorKey = readPrivateKey(flags.key);
            } catch (error) {
              throw new UsageError((error as Error).message);
            }
          }
        }
        const out = flags.out;
        if ((flags.observe || !loaded.testbed.simulated) && flags.live !== undefined)
          throw new UsageError("--live shows a run of the rig, not a testbed observed");
        await withLive(flags, context, async (live) => {
          const campaign =
            flags.observe || !loaded.testbed.simulated
              ? await observeTestbed({
                  testbed: observedTestbed(loaded.testbed, flags),
                  cycles,
                  marginPercent,
                  outDir: out as string,
                  say,
                  ...(operatorKey === undefined ? {} : { operatorKey }),
                }).then((r) => ({ ...r, reportDir: out as string }))
              : await onTheRig(() =>
                  runMeasure({
                    testbedFile: flags.testbed,
                    cycles,
                    marginPercent,
                    ...(flags.runs === undefined ? {} : { runsDir: flags.runs }),
                    ...(flags.netns ? { netns: true } : {}),
                    ...(out === undefined ? {} : { outDir: out }),
                    ...liveRunOption(live, flags),
                    say,
                  }),
                );
          context.io.out(
            `\n${renderSummary(campaign.summary)}\nderived budgets (${path.join(campaign.reportDir, "bounds.yaml")}):\n${campaign.boundsText}\nreport: ${campaign.reportDir}\n`,
          );
          context.setExitCode(promisesExitCode(campaign.summary));
        });
      },
    );

  runsOption(rig.command("down"))
    .description("stop whatever a rig on this testbed left running (after it was killed)")
    .option("--testbed <file>", "a simulated testbed file", DEFAULT_TESTBED)
    .action((flags: { testbed: string; runs?: string }) => {
      const loaded = loadTestbedFile(flags.testbed);
      if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
      const root = rigRunDir(loaded.testbed.name, flags.runs);
      const n = ProcessRegistry.reap(path.join(root, "rig.pids"), [root]);
      const m = NamespaceNetwork.reap(path.join(root, "rig.netns"));
      context.io.out(
        `${n + m === 0 ? "nothing was running" : `stopped ${n} processes${m === 0 ? "" : `, removed ${m} namespaces and links`}`}\n`,
      );
    });

  rig
    .command("board", { hidden: true })
    .requiredOption("--testbed <file>")
    .requiredOption("--board <id>")
    .option("--webhook <url>")
    .option("--join-lead <ms>")
    .action(
      async (flags: { testbed: string; board: string; webhook?: string; joinLead?: string }) => {
        await runBoardChild(
          path.resolve(flags.testbed),
          flags.board,
          flags.webhook,
          flags.joinLead === undefined ? undefined : Number(flags.joinLead),
        );
      },
    );

  rig
    .command("byzantine-host", { hidden: true })
    .requiredOption("--testbed <file>")
    .requiredOption("--host <id>")
    .requiredOption("--behaviours <list>")
    .action(async (flags: { testbed: string; host: string; behaviours: string }) => {
      await runByzantineHost(flags.testbed, flags.host, flags.behaviours);
    });
  return rig;
}
