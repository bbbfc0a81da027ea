import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { SlowestFiles } from "./scripts/slowest-files.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/**
 * Five projects. `rig`: the rig's files (boards, hosts, PTYs, a client load, and the ports they
 * take), one at a time. `daemons`: six board daemons in one process with tight timeliness
 * bounds, over UDP and over PTYs, the two files side by side. `boards`: other files that time
 * real processes (links, the host agent, replica servers, kills in the middle of a restore), one
 * at a time. `sim`: the service's simulation (seed runs and scenario tests), pure CPU that times
 * nothing. `unit`: everything else (the wormhole's simulations among it). `npm test`
 * (scripts/run-tests.mjs) runs the rig beside unit-then-boards (never more than one core's worth
 * of other work beside the rig: the load it is specified to keep its promises under), then the
 * daemons; the sim runs from the end of the unit tests under SCHED_IDLE (it takes only the cores
 * the others leave idle); a plain `vitest run` runs the groups one after the other.
 */
const RIG = ["test-rig/test/rig-*.test.ts"];
// Two files of about equal CPU, side by side: the first seeds with the scenario tests that look
// into their runs, and the seeds that once failed.
const SIM = ["host-agent/test/cluster-sim.test.ts", "host-agent/test/cluster-sim-seeds.test.ts"];
const DAEMONS = ["wormhole-board/test/board-daemons*.test.ts"];
const BOARDS = [
  "wormhole-board/test/control-link.test.ts",
  "wormhole-board/test/host-link-port.test.ts",
  "wormhole-board/test/alerts.test.ts",
  "wormhole-board/test/image-cli.test.ts",
  "wormhole-board/test/media.test.ts",
  "wormhole-board/test/media-workers.test.ts",
  "wormhole-board/test/watchdog.test.ts",
  "wormhole-board/test/journald-priority.test.ts",
  "wormhole-board/test/console-command.test.ts",
  "wormhole-board/test/sysfs-lines.test.ts",
  "host-agent/test/host-agent.test.ts",
  "host-agent/test/replica-server.test.ts",
  "host-agent/test/single-server.test.ts",
  "host-agent/test/peer-connections.test.ts",
  "cli/test/kv-command.test.ts",
  "cli/test/smw.test.ts",
  "test-rig/test/client-load.test.ts",
];

// Tests run against the sources of every part, not their build output.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@smw\/wiring$/, replacement: here("./wiring/src/index.ts") },
      { find: /^@smw\/wiring\/cli$/, replacement: here("./wiring/src/cli/index.ts") },
      { find: /^@smw\/wormhole-board$/, replacement: here("./wormhole-board/src/index.ts") },
      {
        find: /^@smw\/wormhole-board\/cli$/,
        replacement: here("./wormhole-board/src/cli/index.ts"),
      },
      { find: /^@smw\/host-agent$/, replacement: here("./host-agent/src/index.ts") },
      { find: /^@smw\/host-agent\/cli$/, replacement: here("./host-agent/src/cli/index.ts") },
      { find: /^@smw\/test-rig$/, replacement: here("./test-rig/src/index.ts") },
      { find: /^@smw\/test-rig\/cli$/, replacement: here("./test-rig/src/cli/index.ts") },
    ],
  },
  test: {
    testTimeout: 20_000,
    maxWorkers: "100%",
    reporters: ["default", new SlowestFiles()],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["*/test/**/*.test.ts"],
          exclude: [...RIG, ...DAEMONS, ...BOARDS, ...SIM],
          // One module graph for all of them (on one worker, beside the rig): importing every
          // file's graph afresh took 40% of the project's time. These files share no module
          // state; they start processes and use temporary folders of their own.
          isolate: false,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "rig",
          include: RIG,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "boards",
          include: BOARDS,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "sim",
          include: SIM,
          maxWorkers: 2,
          sequence: { groupOrder: 2 },
        },
      },
      {
        extends: true,
        test: {
          name: "daemons",
          include: DAEMONS,
          maxWorkers: 2,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
