/** The host part's subcommands of `smw`. */
import type { CommandFactory } from "@smw/wiring/cli";
import { kvCommand } from "./kv-command.js";

export const hostAgentCommands: CommandFactory[] = [kvCommand];
