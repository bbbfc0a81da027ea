/**
 * Order of keys: the order of their UTF-8 bytes (Buffer.compare), which every
 * replica computes alike, unlike JS string order (UTF-16 code units), which
 * puts astral characters (U+10000 and up) before U+E000..U+FFFF.
 *
 * For well-formed strings, UTF-8 byte order is code point order, so keys are
 * compared without encoding them: at the first differing code unit, moving
 * U+E000..U+FFFF below the surrogates turns code unit order into code point
 * order. Strings with lone surrogates are refused before they get here
 * (isWellFormed), since UTF-8 cannot represent them: "\uD800" and "\uFFFD"
 * would encode to the same bytes.
 */

export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800;
  if (unit >= 0xd800) return unit + 0x2000;
  return unit;
}

// With the u flag a surrogate pair is one code point, so only lone halves match.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** True if the string has no lone surrogate, so UTF-8 encodes it without loss. */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}
