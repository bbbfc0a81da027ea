/** Board daemons over socat PTY pairs (board-daemon-suite.ts), beside the UDP file. */
import { boardDaemonSuite } from "./board-daemon-suite.js";

boardDaemonSuite("serial");
