/**
 * The protocol's size limits (MongoDB's defaults; a server states its own in its handshake).
 * Written once: configuration bounds, the proxy's own connections and the fallbacks for a
 * handshake that omits a field all read them from here.
 */

/** Largest BSON document a server accepts (16 MiB). */
export const MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024;
/** Largest wire message in either direction. */
export const MAX_MESSAGE_SIZE_BYTES = 48_000_000;
/** Most operations in one write command. */
export const MAX_WRITE_BATCH_SIZE = 100_000;
