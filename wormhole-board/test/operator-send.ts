import { sign } from "node:crypto";
import { connect } from "node:net";
import { operatorRequestBytes, readPrivateKey } from "@smw/wormhole-board";

/** One request line to a board's operator socket; its JSON answer. */
export function operatorSend(socketPath: string, line: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const connection = connect(socketPath);
    let text = "";
    connection.setEncoding("utf8");
    connection.on("data", (chunk: string) => {
      text += chunk;
    });
    connection.on("end", () => resolve(JSON.parse(text)));
    connection.on("error", reject);
    connection.write(line);
  });
}

/** A clear-failsafe request line for `board`, signed with the operator's private key file. */
export function signedClear(board: string, issuedAtMs: number, operatorKeyFile: string): string {
  return `${JSON.stringify({
    type: "clear-failsafe",
    board,
    issuedAtMs,
    signature: sign(
      null,
      operatorRequestBytes("clear-failsafe", board, issuedAtMs),
      readPrivateKey(operatorKeyFile),
    ).toString("base64"),
  })}\n`;
}
