// Claims a board's lines through sysfs and then dies the way argv[3] says:
// "throw" (an uncaught error), "wait" (until a signal arrives), "exit".
// With argv[4], it claims under that lock file.
import { BoardLines, SysfsLines } from "../../dist/index.js";

const board = JSON.parse(process.argv[2]);
const lockPath = process.argv[4];
let lines;
try {
  lines = BoardLines.claim(board, new SysfsLines(), lockPath === undefined ? {} : { lockPath });
} catch (error) {
  process.stdout.write(`refused: ${error.message}\n`);
  process.exit(2);
}
lines.installSafeExit();
lines.set("write-protect", "inactive");
process.stdout.write("claimed\n");
// "throw" waits a moment first, so the parent can look at the lines.
if (process.argv[3] === "throw") {
  setTimeout(() => {
    throw new Error("boom");
  }, 300);
}
if (process.argv[3] === "wait") setInterval(() => {}, 1000);
