/**
 * Packages with a native binding (serialport's, onoff's epoll), loaded when first used rather
 * than when smw starts: a binding that cannot load (built for another Node, never built for lack
 * of build tools, no prebuild for the platform) then fails only what needs it, with what to do,
 * and `smw --help`, `smw doctor`, `smw image` and the simulated rig still run.
 */
import type { createRequire } from "node:module";

type Require = ReturnType<typeof createRequire>;

export class NativeModuleError extends Error {
  override name = "NativeModuleError";
}

export interface NativeModule {
  /** The package, as `require` takes it. */
  specifier: string;
  /** What smw needs it for, for the message. */
  neededFor: string;
  /** How to repair it, for the message. */
  repair: string;
}

const loaded = new Map<string, unknown>();

/** The package, or a `NativeModuleError` that says what failed, what for and how to repair it. */
export function requireNative<T>(require: Require, module: NativeModule): T {
  const cached = loaded.get(module.specifier);
  if (cached !== undefined) return cached as T;
  try {
    const value = require(module.specifier) as T;
    loaded.set(module.specifier, value);
    return value;
  } catch (error) {
    const first = (error as Error).message.split("\n")[0]?.trim() ?? String(error);
    throw new NativeModuleError(
      `${module.specifier} did not load (${first}); it is needed for ${module.neededFor}. ${module.repair}`,
    );
  }
}

/** Whether the package loads here: for `smw doctor`. */
export function nativeModuleStatus(
  require: Require,
  module: NativeModule,
): { ok: true } | { ok: false; why: string } {
  try {
    requireNative(require, module);
    return { ok: true };
  } catch (error) {
    return { ok: false, why: (error as Error).message };
  }
}

export const SERIALPORT_MODULE: NativeModule = {
  specifier: "serialport",
  neededFor: "serial lines (a host link, a serial control link, a host's console)",
  repair:
    "Reinstall with npm ci (serialport ships prebuilt bindings for linux-x64, linux-arm64 and linux-arm), or build it: apt-get install build-essential python3, then npm rebuild @serialport/bindings-cpp in smw's folder.",
};

export const ONOFF_MODULE: NativeModule = {
  specifier: "onoff",
  neededFor: "GPIO lines through sysfs (gpio: sysfs)",
  repair:
    "Build its epoll binding for this Node: apt-get install build-essential python3, then npm rebuild epoll in smw's folder; or give this board gpio: gpiod.",
};

/**
 * A serialport `SerialPort` for `path`, not yet open, with serialport loaded through the caller's
 * `require` (the package that depends on it) when first needed.
 */
export function newSerialPort<Port>(require: Require, path: string, baudRate: number): Port {
  const { SerialPort } = requireNative<{
    SerialPort: new (options: { path: string; baudRate: number; autoOpen: boolean }) => Port;
  }>(require, SERIALPORT_MODULE);
  return new SerialPort({ path, baudRate, autoOpen: false });
}
