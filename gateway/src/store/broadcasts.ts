/** The broadcast part of the operational store. */
export interface BroadcastStore {}
