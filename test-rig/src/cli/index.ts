/** The test rig's subcommands of `smw`. */
import type { CommandFactory } from "@smw/wiring/cli";
import { drillCommand } from "./drill-command.js";
import { rigCommand } from "./rig-command.js";

export const testRigCommands: CommandFactory[] = [rigCommand, drillCommand];
export { serveStatusPage } from "../live/status-page.js";
