import { connect } from "node:net";

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
