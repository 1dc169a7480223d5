// Types of bin/platform.js, for lib/binding.ts.
export declare const TOOLS: string;
export declare function platform(): string;
export declare function prebuilds(root: string): string;
