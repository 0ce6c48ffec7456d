/**
 * Who applies a person's decision on an incident (acknowledge, on site, resolve, false alarm,
 * note, escalate). A single gateway applies it itself; in a cluster the leader does, and an
 * instance that does not lead hands it over and waits (cluster/leadership.ts).
 */
import type { IncidentDetail } from '../../../protocol/incidents.js';
import { ApiError } from '../errors.js';
import type { User } from '../store/store.js';
import type { IncidentAction, IncidentService } from './incidents.js';

export interface IncidentDecisions {
  act(id: string, action: IncidentAction, user: User, input: { note?: string; reason?: string }): Promise<IncidentDetail>;
}

/** No instance applied a decision in time (none leads just now): HTTP 503 `NO_LEADER`, try again. */
export class NoLeaderError extends ApiError {
  constructor(message?: string) {
    super('NO_LEADER', message);
  }
}

/** A single gateway (or the leader itself): the incident service applies the decision at once. */
export function localDecisions(incidents: IncidentService): IncidentDecisions {
  return { act: async (id, action, user, input) => incidents.act(id, action, user, input) };
}
