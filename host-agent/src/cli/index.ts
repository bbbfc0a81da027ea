/** The host part's subcommands of `smw`. */
import type { CommandFactory } from "@smw/wiring/cli";
import { historyCommand } from "./history-command.js";
import { hostCommand } from "./host-command.js";
import { kvCommand } from "./kv-command.js";

export { hostCommand, kvCommand };

export const hostAgentCommands: CommandFactory[] = [kvCommand, hostCommand, historyCommand];
