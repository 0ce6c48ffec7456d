export { WaterTankModel, DEFAULT_TANK_PHYSICS } from './model.js';
export type { TankActivity, TankMeasurement, TankModelOptions, TankPhysics, TankSensorFault } from './model.js';
export { startTankFleet, startTankSimulator, transmitterFit } from './simulator.js';
export type { TankEndpoint, TankFault, TankFleet, TankFleetOptions, TankSimulator, TankSimulatorOptions } from './simulator.js';
export { SiteWeather, WeatherStation, YONGCHUAN_CLIMATE } from './weather.js';
export type { Climate, WeatherDay, WeatherReading, WeatherStationOptions } from './weather.js';
