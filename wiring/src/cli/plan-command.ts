/** `smw plan`: the exhaustion-safety planner, from a testbed file, flags, or both. */
import { Command } from "commander";
import { DurationError, parseDurationMs } from "../duration.js";
import { parseExhaustionModel } from "../plan/exhaustion-model.js";
import { planInputFromTestbed, planToJson, renderPlanText } from "../plan/plan-report.js";
import { type PlanInput, PlanInputError, plan } from "../plan/planner.js";
import type { StepBudgets } from "../testbed/testbed.js";
import { type CliContext, UsageError } from "./context.js";
import { loadOrReport } from "./wiring-command.js";

interface PlanFlags {
  n?: string;
  k?: string;
  kPrime?: string;
  f?: string;
  tShutdown?: string;
  tCheckcode?: string;
  tRestorecode?: string;
  tBoot?: string;
  tTransfer?: string;
  tLocalexec?: string;
  tP?: string;
  tD?: string;
  tExhaust?: string;
  handoff?: string;
  procMax?: string;
  clockOffset?: string;
  json?: boolean;
}

const BUDGET_FLAGS = [
  ["tShutdown", "--t-shutdown", "tShutdownMs"],
  ["tCheckcode", "--t-checkcode", "tCheckcodeMs"],
  ["tRestorecode", "--t-restorecode", "tRestorecodeMs"],
  ["tBoot", "--t-boot", "tBootMs"],
  ["tTransfer", "--t-transfer", "tTransferMs"],
] as const;

export function planCommand(context: CliContext): Command {
  return new Command("plan")
    .description(
      "check a rejuvenation schedule against the paper's conditions (exit 0 feasible, 1 infeasible, 2 bad input)",
    )
    .argument("[file]", "testbed file; flags given as well override its figures")
    .option("--n <count>", "replicas")
    .option("--k <count>", "hosts rejuvenated at once (group size)")
    .option("--k-prime <count>", "faults tolerated between rejuvenations")
    .option("--f <count>", "faults tolerated in all (default k + k')")
    .option("--t-shutdown <duration>", "budget of shutdownOS()")
    .option("--t-checkcode <duration>", "budget of checking one image")
    .option("--t-restorecode <duration>", "budget of restoring one image")
    .option("--t-boot <duration>", "budget of bootOS()")
    .option("--t-transfer <duration>", "budget of state recovery")
    .option("--t-localexec <duration>", "T_localexec directly, instead of the five budgets")
    .option("--t-p <duration>", "rejuvenation period T_p (default: chosen from the feasible range)")
    .option(
      "--t-d <duration>",
      "rejuvenation deadline T_d (default: chosen from the feasible range)",
    )
    .option("--t-exhaust <model>", "sequential:T, parallel:T or table:1=T1,2=T2,...")
    .option(
      "--handoff <duration>",
      "control-link hand-off between groups (default: the testbed's deliveryBound, else 0)",
    )
    .option(
      "--proc-max <duration>",
      "how late a board may act, P1 (default: the testbed's timeliness.procMax, else 0)",
    )
    .option(
      "--clock-offset <duration>",
      "how far board clocks may differ (default: the testbed's timeliness.clockOffsetBound, else 0)",
    )
    .option("--json", "print the plan as JSON")
    .addHelpText(
      "after",
      "\nDurations: 150ms, 20s, 5m, 2h, 30d, or sums such as 1h30m.\nExample: smw plan --n 6 --k 1 --k-prime 1 --t-localexec 40s --t-exhaust sequential:1d",
    )
    .action((file: string | undefined, flags: PlanFlags) => {
      let base: PlanInput | undefined;
      let title = "smw plan";
      if (file !== undefined) {
        const testbed = loadOrReport(context, file);
        if (testbed === undefined) return;
        base = planInputFromTestbed(testbed);
        title = `smw plan: testbed "${testbed.name}" (${file})`;
      }
      const input = planInputFromFlags(flags, base);
      let result: ReturnType<typeof plan>;
      try {
        result = plan(input);
      } catch (error) {
        if (error instanceof PlanInputError) throw new UsageError(error.message);
        throw error;
      }
      context.io.out(
        flags.json
          ? `${JSON.stringify(planToJson(result), null, 2)}\n`
          : renderPlanText(result, title),
      );
      context.setExitCode(result.feasible ? 0 : 1);
    });
}

export function planInputFromFlags(flags: PlanFlags, base: PlanInput | undefined): PlanInput {
  const count = (flag: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text.trim()))
      throw new UsageError(`${flag} "${text}": expected a whole number`);
    return Number(text);
  };
  const duration = (flag: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    try {
      return parseDurationMs(text);
    } catch (error) {
      if (error instanceof DurationError) throw new UsageError(`${flag}: ${error.message}`);
      throw error;
    }
  };

  const n = count("--n", flags.n) ?? base?.n;
  const k = count("--k", flags.k) ?? base?.k;
  const kPrime = count("--k-prime", flags.kPrime) ?? base?.kPrime;
  const missing = [
    n === undefined ? "--n" : undefined,
    k === undefined ? "--k" : undefined,
    kPrime === undefined ? "--k-prime" : undefined,
  ].filter((flag) => flag !== undefined);
  if (missing.length > 0) {
    throw new UsageError(`missing ${missing.join(", ")} (or give a testbed file)`);
  }
  const f =
    count("--f", flags.f) ??
    (flags.k !== undefined || flags.kPrime !== undefined ? undefined : base?.f);

  let tExhaust = base?.tExhaust;
  if (flags.tExhaust !== undefined) {
    try {
      tExhaust = parseExhaustionModel(flags.tExhaust);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  if (tExhaust === undefined) {
    throw new UsageError("missing --t-exhaust (sequential:T, parallel:T or table:1=T1,2=T2,...)");
  }

  const tLocalexecMs = duration("--t-localexec", flags.tLocalexec);
  const budgetFlagsGiven = BUDGET_FLAGS.filter(([key]) => flags[key] !== undefined);
  if (tLocalexecMs !== undefined && budgetFlagsGiven.length > 0) {
    throw new UsageError(
      `give either --t-localexec or the step budgets (${budgetFlagsGiven.map(([, flag]) => flag).join(", ")}), not both`,
    );
  }
  let budgets: StepBudgets | undefined;
  if (tLocalexecMs === undefined) {
    const partial: Partial<StepBudgets> = { ...base?.budgets };
    for (const [key, flag, field] of BUDGET_FLAGS) {
      const ms = duration(flag, flags[key]);
      if (ms !== undefined) partial[field] = ms;
    }
    const absent = BUDGET_FLAGS.filter(([, , field]) => partial[field] === undefined).map(
      ([, flag]) => flag,
    );
    if (absent.length === BUDGET_FLAGS.length && base?.tLocalexecMs === undefined) {
      throw new UsageError(
        "missing the step budgets: give --t-shutdown, --t-checkcode, --t-restorecode, --t-boot and --t-transfer, or --t-localexec",
      );
    }
    if (absent.length > 0 && absent.length < BUDGET_FLAGS.length) {
      throw new UsageError(
        `missing ${absent.join(", ")}: give all five step budgets, or --t-localexec`,
      );
    }
    if (absent.length === 0) budgets = partial as StepBudgets;
  }

  const nChanged = flags.n !== undefined || flags.k !== undefined;
  const input: PlanInput = {
    n,
    k,
    kPrime,
    ...(f === undefined ? {} : { f }),
    tExhaust,
    // A configured group order only stands while n and k are the testbed's.
    ...(base?.groups === undefined || nChanged ? {} : { groups: base.groups }),
  } as PlanInput;
  if (budgets !== undefined) input.budgets = budgets;
  else input.tLocalexecMs = tLocalexecMs ?? base?.tLocalexecMs;
  const tPMs = duration("--t-p", flags.tP) ?? base?.tPMs;
  const tDMs = duration("--t-d", flags.tD) ?? base?.tDMs;
  if (tPMs !== undefined) input.tPMs = tPMs;
  if (tDMs !== undefined) input.tDMs = tDMs;
  const handoffMs = duration("--handoff", flags.handoff) ?? base?.handoffMs;
  if (handoffMs !== undefined) input.handoffMs = handoffMs;
  const procMaxMs = duration("--proc-max", flags.procMax) ?? base?.procMaxMs;
  if (procMaxMs !== undefined) input.procMaxMs = procMaxMs;
  const clockOffsetMs = duration("--clock-offset", flags.clockOffset) ?? base?.clockOffsetBoundMs;
  if (clockOffsetMs !== undefined) input.clockOffsetBoundMs = clockOffsetMs;
  return input;
}
