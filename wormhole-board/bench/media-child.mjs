// Runs one image operation with the library, in a process of its own so that
// its peak memory (worker threads included) is its own: prints JSON.
import { readPublicKey, readVerifiedManifest, restoreImage, verifyImage } from "../dist/index.js";

const [operation, live, manifestPath, pubPath, golden] = process.argv.slice(2);
const manifest = readVerifiedManifest(manifestPath, readPublicKey(pubPath));
const started = performance.now();
const result =
  operation === "verify"
    ? await verifyImage(live, manifest)
    : await restoreImage({ livePath: live, goldenPath: golden, manifest });
const wallMs = performance.now() - started;
process.stdout.write(
  `${JSON.stringify({ ...result, wallMs, maxRssKiB: process.resourceUsage().maxRSS })}\n`,
);
