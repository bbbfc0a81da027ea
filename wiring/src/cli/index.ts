/** The wiring part's subcommands of `smw`, and the CLI plumbing all parts share. */
import type { CommandFactory } from "./context.js";
import { planCommand } from "./plan-command.js";
import { wiringCommand } from "./wiring-command.js";

export * from "./check-report.js";
export * from "./context.js";
export { untilInterrupted } from "./until-interrupted.js";
export { loadOrReport } from "./wiring-command.js";

export const wiringCommands: CommandFactory[] = [wiringCommand, planCommand];
export * from "./native-module.js";
export * from "./systemd-notify.js";
