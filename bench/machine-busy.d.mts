/** Types of `machine-busy.mjs`, which `npm run bench` runs as plain JavaScript. */
export declare const BUSY_WARNING_SHARE: number;
export declare function cpuJiffies(): { busy: number; all: number } | undefined;
export declare function busyShare(sampleMs: number): Promise<number | undefined>;
export declare function busyWarning(name: string, share: number | undefined): string | undefined;
