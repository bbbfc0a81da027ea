/**
 * @smw/wiring: describing a testbed and planning it. The testbed file format
 * and its loader, the exhaustion-safety planner, durations, and drawings.
 */

export { escapeXml } from "./diagram/svg.js";
export * from "./diagram/wiring-diagram.js";
export * from "./duration.js";
export * from "./plan/exhaustion-model.js";
export * from "./plan/plan-report.js";
export * from "./plan/planner.js";
export * from "./testbed/chip-checks.js";
export * from "./testbed/file-checks.js";
export * from "./testbed/load.js";
export * from "./testbed/override.js";
export * from "./testbed/problem.js";
export * from "./testbed/schema.js";
export * from "./testbed/summary.js";
export * from "./testbed/testbed.js";
export * from "./wire/control-frame.js";
export * from "./wire/control-messages.js";
export * from "./wire/host-link.js";
export * from "./wire/line-splitter.js";
