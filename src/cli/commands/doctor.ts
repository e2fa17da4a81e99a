import { acquireDevice, describeDevice } from '../../runtime/device.js';

export async function doctor(o: { roofline?: boolean; remeasure?: boolean } = {}): Promise<void> {
  const dev = await acquireDevice();
  process.stdout.write(describeDevice(dev) + '\n');
  if (o.roofline || o.remeasure) {
    const { deviceRoofline, describeRoofline, rooflineCachePath } = await import('../../runtime/roofline.js');
    if (o.remeasure) process.stderr.write('measuring the roofline (FMA peak, bandwidth, launch overhead)...\n');
    const r = await deviceRoofline(dev, { force: !!o.remeasure });
    process.stdout.write(`\n${describeRoofline(r)}\n  (cached in ${await rooflineCachePath()}; --remeasure measures again)\n`);
  }
  dev.destroy();
}
