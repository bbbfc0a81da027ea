/**
 * @smw/test-rig: a whole testbed on one machine. Boards run the real daemon,
 * hosts are process trees booted from their own disks, serial links are PTY
 * pairs; faults are injected; runs are narrated and reported.
 */
export * from "./faults/disk-faults.js";
export * from "./load/client-load.js";
export * from "./report/derived-bounds.js";
export * from "./report/run-report.js";
export * from "./report/step-records.js";
export * from "./report/step-stats.js";
export * from "./report/timeline-svg.js";
export * from "./rig/fault-requests.js";
export * from "./rig/fault-socket.js";
export * from "./rig/host-driver.js";
export * from "./rig/host-network.js";
export * from "./rig/process-host.js";
export * from "./rig/process-registry.js";
export * from "./rig/rig.js";
export * from "./rig/rig-events.js";
export * from "./rig/rig-setup.js";
export * from "./rig/run-folder.js";
export * from "./rig/sm-image.js";
export * from "./scenarios/calibrate.js";
export * from "./scenarios/demo.js";
export * from "./scenarios/drills.js";
export * from "./scenarios/measure.js";
export * from "./scenarios/observe.js";
export * from "./scenarios/rig-run.js";
