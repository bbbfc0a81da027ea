/** Board daemons over socat PTY pairs, bad input, clock, timer and join faults (board-daemon-suite.ts). */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("serial");
