/** Board daemons: bad input, clock and timer faults, and the suite over UDP (board-daemon-suite.ts). */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("udp");
