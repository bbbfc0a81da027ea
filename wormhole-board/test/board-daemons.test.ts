/** Board daemons over UDP, and one schedule fault (board-daemon-suite.ts), beside the PTY file. */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("udp");
