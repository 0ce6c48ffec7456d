export { startRtspServer } from './server.js';
export type { RtspLog, RtspServer, RtspServerOptions } from './server.js';
export { CAMERA_ID } from './protocol.js';
