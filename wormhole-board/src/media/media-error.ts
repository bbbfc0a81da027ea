/** Bad input to an image operation: a message naming the file and the problem (exit 2). */
export class MediaError extends Error {
  override name = "MediaError";
}
