// Finding (or, as root on Debian, installing) the tools that tests and benchmarks need.
import { spawnSync } from "node:child_process";

export function ensureTool(command, debianPackage) {
  if (spawnSync("sh", ["-c", `command -v ${command}`]).status === 0) return;
  const root = process.getuid?.() === 0;
  const apt = spawnSync("sh", ["-c", "command -v apt-get"]).status === 0;
  if (root && apt) {
    process.stderr.write(`${command} not found; installing the Debian package ${debianPackage}\n`);
    spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
    const install = spawnSync("apt-get", ["install", "-y", "-qq", debianPackage], {
      stdio: "inherit",
    });
    if (install.status === 0) return;
  }
  throw new Error(
    `${command} is needed as the reference for this benchmark: install it (Debian: apt-get install ${debianPackage})`,
  );
}
