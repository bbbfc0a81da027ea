// A stand-in for the kernel's sysfs GPIO class, for tests only. Runs inside a
// private mount namespace whose /sys/class is a tmpfs: `export` and `unexport`
// are FIFOs; each number written to `export` becomes a gpioN folder with the
// attribute files the kernel would create, and every write is logged.
import {
  appendFileSync,
  createReadStream,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";

const root = process.argv[2];
const log = process.argv[3];

function serve(name, handle) {
  // Opened read-write, the FIFO always has a writer (us): no end of file
  // between two writers, so no write can fall between two reads and be lost.
  const stream = createReadStream(`${root}/${name}`, { flags: "r+" });
  let pending = "";
  stream.on("data", (chunk) => {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const number of lines.map((l) => l.trim()).filter(Boolean)) {
      appendFileSync(log, `${name} ${number}\n`);
      handle(number);
    }
  });
}

serve("export", (number) => {
  // The kernel makes the folder with its files at once: built aside, then renamed into place,
  // so that nobody sees a gpioN folder whose files are still missing (however loaded the machine).
  const staging = `${root}/.gpio${number}.staging`;
  mkdirSync(staging, { recursive: true });
  writeFileSync(`${staging}/direction`, "in\n");
  writeFileSync(`${staging}/value`, "0\n");
  writeFileSync(`${staging}/active_low`, "0\n");
  writeFileSync(`${staging}/edge`, "none\n");
  renameSync(staging, `${root}/gpio${number}`);
});
serve("unexport", (number) => {
  // What the line held when it was given back, kept for the scenario to check (the real
  // kernel's folder is gone once the unexport write returns; ours goes a moment later).
  const dir = `${root}/gpio${number}`;
  const last = Object.fromEntries(
    ["direction", "value", "active_low"].map((f) => [
      f,
      readFileSync(`${dir}/${f}`, "utf8").trim(),
    ]),
  );
  appendFileSync(`${log}.released`, `${JSON.stringify({ number: Number(number), ...last })}\n`);
  rmSync(dir, { recursive: true, force: true });
});
process.stdout.write("ready\n");
// The FIFO streams never end; leave when the scenario tells us (it kills us).
