// The device-set layer's public face.
export { DeviceSet } from './device-set';
export type { CreateOptions, DeviceSetOptions } from './options';
export type { DeviceDetails, DeviceSetInfo, DeviceUsage } from './types';
