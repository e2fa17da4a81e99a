import { acquireDevice, describeDevice } from '../../runtime/device.js';
import { num } from '../options.js';

export async function doctor(o: { devices?: string; roofline?: boolean; remeasure?: boolean } = {}): Promise<void> {
  const dev = await acquireDevice();
  process.stdout.write(describeDevice(dev) + '\n');
  if (o.roofline || o.remeasure) {
    const { deviceRoofline, describeRoofline, rooflineCachePath } = await import('../../runtime/roofline.js');
    if (o.remeasure) process.stderr.write('measuring the roofline (FMA peak, bandwidth, launch overhead)...\n');
    const r = await deviceRoofline(dev, { force: !!o.remeasure });
    process.stdout.write(`\n${describeRoofline(r)}\n  (cached in ${await rooflineCachePath()}; --remeasure measures again)\n`);
  }
  dev.destroy();
  if (o.devices === undefined) return;
  const n = num('--devices', o.devices, { int: true, min: 1 });
  const { acquireDevices } = await import('../../runtime/multi.js');
  const devs = await acquireDevices(n);
  // WebGPU offers no adapter enumeration: on one GPU (or lavapipe) every device comes from the same adapter.
  process.stdout.write(`devices (${n}, as kiln train --devices ${n} opens them):\n`);
  devs.forEach((d, i) => {
    const a = d.adapterInfo;
    const name = a.description || a.device || a.vendor || '?';
    const same = i > 0 && JSON.stringify(a) === JSON.stringify(devs[0].adapterInfo);
    process.stdout.write(`  device ${i}: ${name} (${a.vendor || '?'}, ${a.architecture || '?'})${same ? ', same adapter as device 0' : ''}\n`);
  });
  for (const d of devs) d.destroy();
}
