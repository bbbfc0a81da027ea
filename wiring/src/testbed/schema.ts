/**
 * The testbed file as written (YAML), checked shape by shape. Durations are
 * already milliseconds here; `testbed.ts` gives the rest of smw its typed view.
 * Every object is strict: an unknown key is an error, because a misspelt
 * `safe:` that silently falls back to a default could leave a host running.
 */
import { z } from "zod";
import { parseDurationMs } from "../duration.js";

// Zod compiles a fast path for each schema with `new Function` on its first parse, which V8's code
// cache never holds: a process parses one testbed (a host agent, a replica, each at every boot),
// so the compile cost more than it saved (rig-6.yaml, first parse in a new process: 61–66 ms with
// it, 44–54 ms without; fifty parses in a row took the same either way).
z.config({ jitless: true });

export const TESTBED_FORMAT_VERSION = 1;

export const LINE_ROLES = [
  "reset",
  "power",
  "write-protect",
  "storage-mux",
  "alarm",
  "status",
] as const;
export type LineRole = (typeof LINE_ROLES)[number];

export const LEVELS = ["active", "inactive"] as const;
export type Level = (typeof LEVELS)[number];

export const IMAGE_NAMES = ["os", "sm"] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];

const id = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_-]{0,31}$/,
    "ids start with a letter and hold letters, digits, - or _ (at most 32)",
  );

const nonEmpty = z.string().min(1, "must not be empty");

const durationMs = z.unknown().transform((value, ctx): number => {
  if (typeof value !== "string") {
    ctx.addIssue({
      code: "custom",
      message:
        value === undefined
          ? "missing; expected a duration such as 20s"
          : `expected a duration with a unit such as 150ms, 20s, 5m, 2h or 30d, got ${describe(value)}`,
    });
    return z.NEVER;
  }
  try {
    return parseDurationMs(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

const positiveDurationMs = durationMs.refine((ms) => ms > 0, "must be longer than zero");

const port = z.int().min(1).max(65535);

/** `host:port`, `1.2.3.4:port` or `[::1]:port`. */
const hostAndPort = z.string().refine((text) => {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  return match !== null && Number(match[2]) >= 1 && Number(match[2]) <= 65535;
}, "expected host:port with a port 1-65535, e.g. 10.0.0.11:7001 or [fd00::11]:7001");

const line = z.strictObject({
  role: z.enum(LINE_ROLES),
  /** gpiochip label, as in /sys/class/gpio/gpiochip*\/label (e.g. pinctrl-bcm2711). */
  chip: nonEmpty,
  offset: z.int().min(0).max(65535),
  activeLow: z.boolean().default(false),
  initial: z.enum(LEVELS).optional(),
  safe: z.enum(LEVELS).optional(),
  label: z.string().optional(),
});

const serialPort = z.strictObject({
  device: nonEmpty,
  baud: z.int().positive().default(115200),
});

const image = z.strictObject({
  /** The host's code disk as the board sees it: an image file or a block device. */
  live: nonEmpty,
  /** The golden copy, on read-only media. */
  golden: nonEmpty,
  /** The signed manifest of the golden copy. */
  manifest: nonEmpty,
});

const boardControl = z.strictObject({
  /** Serial mesh/ring/star: the device that reaches each peer board. */
  links: z.record(id, nonEmpty).optional(),
  /** Serial bus (RS-485): the board's one device on the shared bus. */
  device: nonEmpty.optional(),
  /** Ethernet: this board's address and port on the control network. */
  address: nonEmpty.optional(),
  port: port.optional(),
});

const board = z.strictObject({
  id,
  guards: id,
  /** The board's own state: latched fail-safe, step records, boot epoch (default /var/lib/smw/<id>). */
  stateDir: nonEmpty.optional(),
  /** Where the operator reaches the daemon over the network (status, clear-failsafe), host:port. */
  operatorEndpoint: hostAndPort.optional(),
  /** Prometheus metrics over HTTP (GET /metrics), host:port; read-only and unauthenticated. */
  metricsEndpoint: hostAndPort.optional(),
  /**
   * How the board drives its GPIO lines: the kernel's sysfs interface (default), or the GPIO
   * character device through the libgpiod v2 command-line tools (gpioset, gpioget, gpiodetect).
   */
  gpio: z.enum(["sysfs", "gpiod"]).optional(),
  lines: z.array(line).min(1, "a board needs at least its reset line"),
  control: boardControl,
  hostLink: serialPort,
  images: z.strictObject({ os: image, sm: image }),
  keys: z.strictObject({
    /** Ed25519 private key: signs the replica key certificates of its host. */
    signing: nonEmpty,
    /** Folder of pairwise HMAC keys for the control link, one file per peer. */
    linkDir: nonEmpty,
  }),
});

const replicaSettings = z.strictObject({
  checkpointInterval: z.int().positive().optional(),
  batchMax: z.int().positive().optional(),
  /** Batches the primary may have proposed and not yet executed: the pipeline's depth. */
  batchesInFlight: z.int().positive().max(64).optional(),
  viewChangeTimeout: positiveDurationMs.optional(),
});

const host = z.strictObject({
  id,
  /** Payload-network address of its replica. */
  address: hostAndPort,
  /** The host's end of its serial console: the host link. */
  console: serialPort,
  /** Stable storage: checkpoints and keys survive resets here. */
  stateDir: nonEmpty,
  replica: replicaSettings.optional(),
});

const controlNetwork = z.strictObject({
  transport: z.enum(["serial", "udp", "tcp"]),
  baud: z.int().positive().optional(),
  topology: z.enum(["mesh", "ring", "star", "bus"]).optional(),
  hub: id.optional(),
  heartbeat: positiveDurationMs.default(100),
  silenceBound: positiveDurationMs.default(500),
  deliveryBound: positiveDurationMs.default(20),
  /** How long a board may take to agree on a schedule with its peers before it fails safe (default: tP). */
  joinDeadline: positiveDurationMs.optional(),
});

const rejuvenation = z.strictObject({
  k: z.int().min(1, "k is at least 1: every rejuvenation group holds at least one host"),
  kPrime: z.int().min(0),
  f: z.int().min(1).optional(),
  tP: positiveDurationMs.optional(),
  tD: positiveDurationMs.optional(),
  budgets: z.strictObject({
    tShutdown: positiveDurationMs,
    tCheckcode: positiveDurationMs,
    tRestorecode: positiveDurationMs,
    tBoot: positiveDurationMs,
    tTransfer: positiveDurationMs,
  }),
  /**
   * How long a board's lease on its host's key lasts (renewed four times a lease while the host
   * runs, not once its group began). The shutdown step resets the host only once the last lease
   * lapsed, so no client counts a key whose host the adversary may leave at that reset; it must
   * fit T_shutdown with P1's processing delay to spare. Default: 1 s, or half of T_shutdown, or
   * T_shutdown less procMax, whichever is least (`keyLeaseDefaults`).
   */
  keyLease: positiveDurationMs.optional(),
  order: z.array(z.array(id).min(1, "a group holds at least one host")).min(1).optional(),
});

const tExhaust = z.union(
  [
    z.strictObject({ sequential: positiveDurationMs }),
    z.strictObject({ parallel: positiveDurationMs }),
    z.strictObject({
      table: z
        .record(
          z.string().regex(/^[1-9]\d*$/, "table keys are replica counts 1, 2, 3, ..."),
          positiveDurationMs,
        )
        .refine((table) => Object.keys(table).length > 0, "the table needs at least one entry"),
    }),
  ],
  {
    error: () =>
      "expected exactly one of { sequential: T }, { parallel: T } or { table: { 1: T1, 2: T2, ... } }",
  },
);

const failsafeAction = z.union(
  [
    z.enum(["hold-reset", "power-off", "alarm-line"]),
    z.strictObject({ webhook: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }) }),
    z.strictObject({ exec: z.array(nonEmpty).min(1, "exec needs the program to run") }),
  ],
  {
    error: () =>
      'expected "hold-reset", "power-off", "alarm-line", { webhook: URL } or { exec: [program, args...] }',
  },
);

export const testbedSchema = z.strictObject({
  smw: z.literal(TESTBED_FORMAT_VERSION, {
    error: `this smw reads testbed format ${TESTBED_FORMAT_VERSION}; write "smw: ${TESTBED_FORMAT_VERSION}" at the top`,
  }),
  name: id,
  description: z.string().optional(),
  /** Simulated testbeds are brought up by the rig on one machine. */
  simulated: z.boolean().default(false),
  keys: z.strictObject({
    /** Ed25519 public key of the operator: manifests and fail-safe clearing. */
    operator: nonEmpty,
    /** Folder of the service's clients' Ed25519 public keys, <client id>.pub: replicas serve only these. */
    clients: nonEmpty.optional(),
  }),
  timeliness: z
    .strictObject({
      /** P1: the bound on the board's processing delays and timer lateness. */
      procMax: positiveDurationMs.default(2),
      /** P2: the bound on the drift rate of a board's clock, parts per million. */
      driftMaxPpm: z.number().positive().default(100),
      /** Largest clock offset tolerated between two boards. */
      clockOffsetBound: positiveDurationMs.default(10),
      /**
       * How far a client's clock may be from the boards' clocks (NTP keeps it to milliseconds): a
       * client counts a replica's replies only while that replica's key lease has this much left.
       * Default: 250 ms, or a quarter of the key lease if that is less (`keyLeaseDefaults`).
       */
      clientClockBound: positiveDurationMs.optional(),
    })
    .default({ procMax: 2, driftMaxPpm: 100, clockOffsetBound: 10 }),
  replication: replicaSettings.optional(),
  hosts: z.array(host).min(1),
  boards: z.array(board).min(1),
  controlNetwork,
  rejuvenation,
  tExhaust,
  failsafe: z.strictObject({
    actions: z.array(failsafeAction).min(1, "name at least one fail-safe action"),
    /** Authentication failures from one claimed peer, within the window, that count as an attack. */
    authFailureLimit: z.int().positive().default(5),
    authFailureWindow: positiveDurationMs.default(60_000),
    /**
     * What an attack on the control link does: raise an alarm (the default: anyone who reaches a
     * control port could otherwise switch the testbed off), or take every board to fail-safe.
     */
    onAuthFailures: z.enum(["alarm", "fail-safe"]).default("alarm"),
  }),
});

export type RawTestbed = z.output<typeof testbedSchema>;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** Messages people understand, instead of the schema library's defaults. */
export function describeIssue(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === "invalid_type") {
    if (issue.input === undefined) return `missing; expected ${issue.expected}`;
    return `expected ${issue.expected}, got ${describe(issue.input)}`;
  }
  if (issue.code === "invalid_value" && issue.values.length > 1) {
    return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}, got ${describe(issue.input)}`;
  }
  return undefined;
}
