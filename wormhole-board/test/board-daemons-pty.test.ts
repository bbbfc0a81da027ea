/** Board daemons over socat PTY pairs, bad input, clock and timer faults (board-daemon-suite.ts). */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("serial");
