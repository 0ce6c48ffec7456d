/** What both stores do with a database whose schema is newer than the migrations this gateway has. */
import { MIGRATIONS } from './migrations.js';

export const LATEST_SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Throws when `current` (the highest applied migration) is past what this gateway knows (`latest`: the store's own list). */
export function refuseNewerSchema(current: number, latest = LATEST_SCHEMA_VERSION): void {
  if (current > latest) {
    throw new Error(`the operational store is at schema version ${current}, newer than this gateway knows (${latest}); upgrade the gateway`);
  }
}
