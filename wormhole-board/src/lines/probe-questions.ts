/**
 * What a person at the bench should see when a line of each role is active: the question
 * `smw wiring probe` asks, line by line, to commission a board's wiring.
 */
import type { LineRole } from "@smw/wiring";

export function activeEffect(role: LineRole, host: string): string {
  switch (role) {
    case "reset":
      return `${host} is held in reset (stopped, its console silent)`;
    case "power":
      return `${host} has power`;
    case "write-protect":
      return `${host}'s code disk is write-protected (its jumper or switch engaged)`;
    case "storage-mux":
      return `${host}'s code disk is switched over to the board`;
    case "alarm":
      return "the alarm is raised (buzzer, light or relay)";
    case "status":
      return "the status indicator is lit";
  }
}
