// A stand-in for the kernel's sysfs GPIO class, for tests only. Runs inside a
// private mount namespace whose /sys/class is a tmpfs: `export` and `unexport`
// are FIFOs; each number written to `export` becomes a gpioN folder with the
// attribute files the kernel would create, and every write is logged.
import { appendFileSync, createReadStream, mkdirSync, rmSync, writeFileSync } from "node:fs";

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
  const dir = `${root}/gpio${number}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/direction`, "in\n");
  writeFileSync(`${dir}/value`, "0\n");
  writeFileSync(`${dir}/active_low`, "0\n");
  writeFileSync(`${dir}/edge`, "none\n");
});
serve("unexport", (number) => {
  rmSync(`${root}/gpio${number}`, { recursive: true, force: true });
});
process.stdout.write("ready\n");
// The FIFO streams never end; leave when the scenario tells us (it kills us).
