/** Board daemons over UDP (board-daemon-suite.ts), beside the PTY file. */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("udp");
