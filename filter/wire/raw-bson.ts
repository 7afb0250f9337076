import { elements, nameOf, type Element } from './peek';

/**
 * Building BSON from raw pieces without decoding them: an element from its value's bytes, a
 * document from elements, and an element's own bytes. For rewriting a few top-level fields of
 * a command while the rest is copied as sent.
 */

/** A BSON element: type byte, NUL-terminated name, value bytes. */
export function element(type: number, name: string, value: Buffer): Buffer {
  const n = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(1 + n.length + 1 + value.length);
  out[0] = type;
  n.copy(out, 1);
  out[1 + n.length] = 0;
  value.copy(out, n.length + 2);
  return out;
}

/** A document from its elements' bytes (`prefix`: an already-serialized document minus its trailing NUL). */
export function documentOf(parts: readonly Buffer[], prefix?: Buffer): Buffer {
  const out = Buffer.concat([prefix ?? Buffer.alloc(4), ...parts, Buffer.alloc(1)]);
  out.writeInt32LE(out.length, 0);
  return out;
}

/** An element's whole bytes (type, name, value), as found in `doc`. */
export function elementBytes(doc: Buffer, e: Element): Buffer {
  return doc.subarray(e[1] - 1, e[3] + e[4]);
}

/** The value bytes of an embedded document or array element. */
export function valueBytes(doc: Buffer, e: Element): Buffer {
  return doc.subarray(e[3], e[3] + e[4]);
}

/** Top-level elements by name. */
export function elementsByName(doc: Buffer, offset = 0): Map<string, Element> {
  const out = new Map<string, Element>();
  for (const e of elements(doc, offset)) out.set(nameOf(doc, e), e);
  return out;
}
