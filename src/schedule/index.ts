export { schedule, fuseKernels, describeSchedule, unfusedKernelCount, DEFAULT_SCHEDULE_OPTIONS } from './schedule.js';
export { markInPlaceUpdates } from './inplace.js';
export type { Kernel, KernelKind, Schedule, ScheduleOptions, Storage } from './schedule.js';
export { planMemory, verifyMemoryPlan, describeMemory, deviceBytes } from './memory.js';
export type { MemoryPlan, TensorAlloc, DeviceMemoryLimits } from './memory.js';
