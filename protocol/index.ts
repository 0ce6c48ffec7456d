export * from './topics.js';
export * from './payloads.js';
export * from './validate.js';
export type * from './ws.js';
