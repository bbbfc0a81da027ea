/**
 * The last request executed for every client and its result: part of the
 * replicated state, so a retransmitted request is answered, not executed
 * twice, also by a replica that got its state by transfer.
 */
import type { KvResult } from "../kv/kv-operation.js";
import { canonicalJson, sha256Hex } from "./canonical.js";
import type { ClientTableEntry } from "./messages.js";

export class ClientTable {
  private readonly entries = new Map<string, ClientTableEntry>();

  static from(entries: readonly ClientTableEntry[]): ClientTable {
    const table = new ClientTable();
    for (const e of entries) table.entries.set(e.client, { ...e });
    return table;
  }

  lastTs(client: string): number {
    return this.entries.get(client)?.ts ?? 0;
  }

  last(client: string): ClientTableEntry | undefined {
    return this.entries.get(client);
  }

  /**
   * `op`: the request's digest (`requestDigest`); `batch`: the executing batch's digest (none in
   * the unreplicated server, which has no batches).
   */
  record(
    client: string,
    ts: number,
    op: string,
    result: KvResult,
    seq: number,
    batch?: string,
  ): void {
    this.entries.set(client, {
      client,
      ts,
      result,
      seq,
      ...(batch !== undefined ? { batch } : {}),
      op,
    });
  }

  /** Sorted by client id: the same bytes on every replica. */
  list(): ClientTableEntry[] {
    return [...this.entries.values()].sort((a, b) =>
      a.client < b.client ? -1 : a.client > b.client ? 1 : 0,
    );
  }

  digest(): string {
    return clientTableDigest(this.list());
  }
}

/**
 * The entries of a sorted table from `from` on while they fit `budgetBytes` as JSON writes them,
 * always the first: what one META or CLIENTS carries (a client's last result may be a value of
 * 1 MiB).
 */
export function clientsPage(
  sorted: readonly ClientTableEntry[],
  from: number,
  budgetBytes: number,
): ClientTableEntry[] {
  const page: ClientTableEntry[] = [];
  let bytes = 0;
  for (let i = from; i < sorted.length; i++) {
    const entry = sorted[i] as ClientTableEntry;
    // Bytes, not UTF-16 units: a value of 3-byte characters is three times its length.
    bytes += Buffer.byteLength(JSON.stringify(entry)) + 1;
    if (page.length > 0 && bytes > budgetBytes) break;
    page.push(entry);
  }
  return page;
}

export function clientTableDigest(sorted: readonly ClientTableEntry[]): string {
  return sha256Hex("clients", canonicalJson(sorted));
}

/** A checkpoint's digest: the key-value store's partition-tree root and the client table. */
export function checkpointDigest(kvRootHex: string, clientsDigest: string): string {
  return sha256Hex("checkpoint", kvRootHex, clientsDigest);
}
