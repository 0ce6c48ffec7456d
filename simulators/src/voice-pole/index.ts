export { BUILT_IN_CLIPS, PoleError, PoleModel, PRIORITIES, speechDurationMs, nominalDurationMs, CHIME_MS, REPEAT_GAP_MS, START_DELAY_MS } from './model.js';
export type { Clip, JobState, JobType, PlayRequest, PoleJob, PoleModelOptions, PolePriority, PoleStatus } from './model.js';
export { DEFAULT_POLE_AUTH, startPoleFleet, startPoleSimulator } from './simulator.js';
export type { PoleAuth, PoleFault, PoleFleet, PoleFleetOptions, PoleRequestRecord, PoleSimulator, PoleSimulatorOptions } from './simulator.js';
