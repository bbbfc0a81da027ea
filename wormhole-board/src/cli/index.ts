/** The board part's subcommands of `smw`. */
import type { CommandFactory } from "@smw/wiring/cli";
import { boardCommand } from "./board-command.js";
import { consoleCommand } from "./console-command.js";
import { deployCommand } from "./deploy-command.js";
import { doctorCommand } from "./doctor-command.js";
import { imageCommand } from "./image-command.js";
import { keysCommand } from "./keys-command.js";
import { linesCommand } from "./lines-command.js";

export const wormholeBoardCommands: CommandFactory[] = [
  keysCommand,
  imageCommand,
  boardCommand,
  deployCommand,
  linesCommand,
  doctorCommand,
  consoleCommand,
];
export type { BoardStatus } from "../board/board-daemon.js";
export {
  askBoardStatus,
  openBoardDaemon,
  type StatusPageServer,
  statusCommand,
} from "./board-command.js";
export { probeCommand } from "./probe-command.js";
