/**
 * Simulated GPIO: lines that exist only in this process, observable (every
 * change is an event with the physical level) and drivable by tests and the
 * rig (a line can be made to stick, so read-back catches it).
 */
import { EventEmitter } from "node:events";
import type { Level, Line as LineSpec } from "@smw/wiring";
import {
  type ClaimedLine,
  type ClaimLevels,
  describeLineSpec,
  type LineBackend,
  LineError,
  physicalHigh,
  startLevel,
} from "./line.js";

export interface SimulatedLineEvent {
  chip: string;
  offset: number;
  role: LineSpec["role"];
  /** Physical level on the wire after the change. */
  high: boolean;
  /** Logical level as the claimer sees it. */
  level: Level;
  kind: "claim" | "set" | "release";
}

interface SimulatedPin {
  claimedBy?: LineSpec;
  high: boolean;
  /** A stuck pin ignores writes: a broken driver or a cut wire. */
  stuckHigh?: boolean;
  exported: boolean;
}

export class SimulatedLines implements LineBackend {
  readonly name = "simulated";
  private readonly pins = new Map<string, SimulatedPin>();
  private readonly events = new EventEmitter();
  /** Every change, in order: what tests assert on. */
  readonly history: SimulatedLineEvent[] = [];

  claim(spec: LineSpec, levels: ClaimLevels): ClaimedLine {
    const key = pinKey(spec.chip, spec.offset);
    const pin = this.pins.get(key) ?? { high: false, exported: false };
    if (pin.claimedBy !== undefined) {
      throw new LineError(
        `${describeLineSpec(spec)} is already claimed as the ${pin.claimedBy.role} line`,
      );
    }
    pin.claimedBy = spec;
    pin.exported = true;
    this.pins.set(key, pin);
    this.drive(pin, spec, startLevel(spec, levels), "claim");
    const lines = this;
    let released = false;
    return {
      spec,
      set(level) {
        if (released) throw new LineError(`${describeLineSpec(spec)} was released`);
        lines.drive(pin, spec, level, "set");
      },
      get() {
        return pin.high !== spec.activeLow ? "active" : "inactive";
      },
      release(options) {
        if (released) return;
        lines.drive(pin, spec, spec.safe, "release");
        pin.claimedBy = undefined;
        if (options?.unexport) pin.exported = false;
        released = true;
      },
    };
  }

  /** The physical level of a pin (false when it was never driven). */
  isHigh(chip: string, offset: number): boolean {
    return this.pins.get(pinKey(chip, offset))?.high ?? false;
  }

  /** Whether a pin is claimed right now. */
  isClaimed(chip: string, offset: number): boolean {
    return this.pins.get(pinKey(chip, offset))?.claimedBy !== undefined;
  }

  /** Makes a pin ignore writes and read as `high` (undefined: unstick it). */
  stick(chip: string, offset: number, high: boolean | undefined): void {
    const key = pinKey(chip, offset);
    const pin = this.pins.get(key) ?? { high: false, exported: false };
    pin.stuckHigh = high;
    if (high !== undefined) pin.high = high;
    this.pins.set(key, pin);
  }

  onChange(listener: (event: SimulatedLineEvent) => void): () => void {
    this.events.on("change", listener);
    return () => this.events.off("change", listener);
  }

  private drive(
    pin: SimulatedPin,
    spec: LineSpec,
    level: Level,
    kind: SimulatedLineEvent["kind"],
  ): void {
    if (pin.stuckHigh === undefined) pin.high = physicalHigh(level, spec.activeLow);
    const event: SimulatedLineEvent = {
      chip: spec.chip,
      offset: spec.offset,
      role: spec.role,
      high: pin.high,
      level: pin.high !== spec.activeLow ? "active" : "inactive",
      kind,
    };
    this.history.push(event);
    this.events.emit("change", event);
  }
}

function pinKey(chip: string, offset: number): string {
  return `${chip}\u0000${offset}`;
}
