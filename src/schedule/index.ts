export { schedule, describeSchedule, unfusedKernelCount } from './schedule.js';
export type { Kernel, KernelKind, Schedule, ScheduleOptions, Storage } from './schedule.js';
export { planMemory, verifyMemoryPlan, describeMemory, deviceBytes } from './memory.js';
export type { MemoryPlan, TensorAlloc, DeviceMemoryLimits } from './memory.js';
