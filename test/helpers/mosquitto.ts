/** The tests' Mosquitto: the same starter the benchmarks use (scripts/lib/mosquitto.ts). */
export { MOSQUITTO, startMosquitto, type MosquittoServer } from '../../scripts/lib/mosquitto.js';
