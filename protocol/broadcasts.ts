/** Broadcast jobs as the API and the dashboard see them (REST bodies and `/ws` messages). */
export type BroadcastServerMessage = never;
