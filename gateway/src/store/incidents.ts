/** The incident part of the operational store. */
export interface IncidentStore {}
