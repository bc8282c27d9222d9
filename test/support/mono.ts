/**
 * Milliseconds on CLOCK_MONOTONIC. process.hrtime is CLOCK_MONOTONIC on Linux, one clock for every process
 * on the machine, so a worker's timestamps and the runner's can be compared; performance.now() counts
 * from each process's own start and cannot.
 */
export const mono = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;
