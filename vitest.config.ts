import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

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
    include: ["*/test/**/*.test.ts"],
    testTimeout: 20_000,
    // Timing-sensitive tests (board daemons, kills mid-restore) must not share
    // two cores with another file's hashing: one file at a time.
    fileParallelism: false,
  },
});
