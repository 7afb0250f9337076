/**
 * A map bounded in size (least recently used evicted first) and in idle time. Insertion order
 * is recency order: a touched entry is re-inserted at the end, so the TTL sweep can stop at the
 * first fresh entry. `onEvict` hears about every entry that leaves other than by `delete`.
 */
export class LruTtlMap<V extends { lastUsedAt: number }> {
  private readonly map = new Map<string, V>();

  constructor(
    private readonly maxEntries: number,
    private readonly idleTtlMs: number,
    private readonly onEvict: (key: string, value: V, reason: 'size_limit' | 'idle_ttl') => void,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** The entry, marked as just used. */
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v) {
      v.lastUsedAt = Date.now();
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    while (this.map.size >= this.maxEntries) {
      const [oldestKey, oldest] = this.map.entries().next().value as [string, V];
      this.map.delete(oldestKey);
      this.onEvict(oldestKey, oldest, 'size_limit');
    }
    this.map.set(key, value);
  }

  /** Removes an entry; returns it. */
  delete(key: string): V | undefined {
    const v = this.map.get(key);
    this.map.delete(key);
    return v;
  }

  entries(): IterableIterator<[string, V]> {
    return this.map.entries();
  }

  /** At most `limit` entries, most recently used first (for inspection). */
  recent(limit: number): V[] {
    const out: V[] = [];
    const values = [...this.map.values()];
    for (let i = values.length - 1; i >= 0 && out.length < limit; i--) out.push(values[i]!);
    return out;
  }

  sweep(now = Date.now()): void {
    for (const [key, v] of this.map) {
      if (now - v.lastUsedAt < this.idleTtlMs) break;
      this.map.delete(key);
      this.onEvict(key, v, 'idle_ttl');
    }
  }
}
