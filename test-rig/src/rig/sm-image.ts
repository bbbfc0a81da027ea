/**
 * The state-machine code image of a simulated host: what its disk says to run
 * after boot. A text header names the program (the host agent, or a Byzantine
 * variant planted by an intruder), padded with zeros to a fixed size so the
 * board seals and checks it like any code disk. A host whose image does not
 * parse does not boot, as a real host with a mangled boot disk.
 */
const MAGIC = "smw-sm-image 1";

export type SmProgram =
  | { kind: "host-agent" }
  | { kind: "byzantine"; behaviours: readonly string[] };

export const SM_IMAGE_SIZE_BYTES = 256 * 1024;

export function encodeSmImage(program: SmProgram, sizeBytes = SM_IMAGE_SIZE_BYTES): Buffer {
  const lines = [MAGIC];
  if (program.kind === "host-agent") lines.push("program: smw host run");
  else lines.push("program: byzantine-host", `behaviours: ${program.behaviours.join(",")}`);
  const header = Buffer.from(`${lines.join("\n")}\n\n`, "utf8");
  if (header.length > sizeBytes) throw new RangeError("SM image header larger than the image");
  const image = Buffer.alloc(sizeBytes);
  header.copy(image);
  // The rest of the "code": deterministic filler, so a corrupted byte anywhere is a real change.
  for (let i = header.length; i < sizeBytes; i++) image[i] = (i * 31 + 7) & 0xff;
  return image;
}

/** The program an image says to run, or why the host cannot boot from it. */
export function decodeSmImage(image: Buffer): { program: SmProgram } | { error: string } {
  const end = image.indexOf("\n\n");
  if (end < 0 || end > 4096) return { error: "no boot header" };
  const lines = image.subarray(0, end).toString("utf8").split("\n");
  if (lines[0] !== MAGIC) return { error: "unknown image format" };
  const fields = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(": ");
    if (colon < 0) return { error: `malformed header line "${line}"` };
    fields.set(line.slice(0, colon), line.slice(colon + 2));
  }
  const program = fields.get("program");
  if (program === "smw host run") return { program: { kind: "host-agent" } };
  if (program === "byzantine-host") {
    const behaviours = (fields.get("behaviours") ?? "").split(",").filter((b) => b !== "");
    return { program: { kind: "byzantine", behaviours } };
  }
  return { error: `unknown program "${program ?? ""}"` };
}
