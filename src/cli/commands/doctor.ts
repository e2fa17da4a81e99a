import { acquireDevice, describeDevice } from '../../runtime/device.js';

export async function doctor(): Promise<void> {
  const dev = await acquireDevice();
  process.stdout.write(describeDevice(dev) + '\n');
  dev.destroy();
}
