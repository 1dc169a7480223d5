export const DEFAULT_NAME: string;
export const DEFAULT_RELEASE: string;
export const BUSYBOX: string;

/** What buildBusyboxImage wrote: the reference, the release line, the digests (sha256:…) and the archive's size in bytes. */
export interface BusyboxImage {
  name: string;
  release: string;
  manifest: string;
  config: string;
  layer: string;
  diffId: string;
  size: number;
}

export function buildBusyboxImage(outPath: string, options?: { name?: string; release?: string }): Promise<BusyboxImage>;
