// Types of containerd-kit.mjs: a real containerd for the end-to-end kernel tests and the snapshotter race.
/** containerd's built-in devmapper snapshotter on an existing thin pool. */
export interface DevmapperSnapshotterConfig {
  /** The thin pool's device-mapper name; the snapshotter names its devices `<pool_name>-snap-N`. */
  poolName: string;
  /** Its metadata (a bolt database). */
  rootPath: string;
  /** Size of each snapshot device, as containerd parses it (default '64MB'). */
  baseImageSize?: string;
}
export interface ContainerdOptions {
  /** Directory for the config, root, state, socket and log (made if missing). */
  dir: string;
  /** The namespace every ctr call uses (default 'devmapper-test'). */
  namespace?: string;
  /** `[proxy_plugins.NAME] type = "snapshot"` for each name, at the given socket. */
  proxySnapshotters?: Record<string, string>;
  /** Configure the built-in devmapper snapshotter (otherwise it stays unconfigured and reports an error). */
  devmapper?: DevmapperSnapshotterConfig;
  /** Plugins to disable besides the defaults (DISABLED: CRI, opt, and the snapshotters that cannot work here). */
  disabledPlugins?: string[];
  /** containerd's log level (default 'info'; 'debug' logs each snapshotter call). */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** More environment for containerd (and so its dmsetup, mkfs, shims). */
  env?: Record<string, string>;
  /** Bound for containerd to serve its API (default 120 s: a busy VM is slow to exec Go binaries). */
  readyTimeoutMs?: number;
  /**
   * Collect garbage only when asked (`ctr images rm --sync`), never on its own schedule: a snapshot
   * the test holds without a reference (a committed one, say) then stays until the test lets go.
   */
  manualGc?: boolean;
}
export interface CtrOptions {
  /** Written to ctr's stdin (e.g. an image archive for `image import -`). */
  input?: string | Buffer;
  /** Bound for the ctr run, then SIGKILL (default 240 s). */
  timeoutMs?: number;
}
/** A failed ctr call: its exit, stderr, and the tail of containerd's log (what the daemon saw). */
export declare class CtrError extends Error {
  readonly stdout: string;
  readonly stderr: string;
  constructor(message: string, stdout: string, stderr: string);
}
/** One line of `ctr plugins ls`: TYPE ID PLATFORMS STATUS. */
export interface PluginStatus {
  type: string;
  id: string;
  status: string;
}
/**
 * cgroup2 on /sys/fs/cgroup, which runc needs to place a container. The VM mounts none; a host's
 * own hierarchy (v2, or v1's tmpfs) is left as it is. Left mounted after: it is the kernel's one
 * hierarchy, and unmounting fails while any cgroup exists.
 */
export declare function ensureCgroup2(): Promise<void>;
/** containerd's config (version 2) for `o`: everything under `dir`. */
export declare function containerdConfig(
  o: ContainerdOptions,
  paths: {
    root: string;
    state: string;
    address: string;
  },
): string;
/** A containerd daemon of our own; see `Containerd.start`. */
export declare class Containerd {
  readonly dir: string;
  private readonly child;
  readonly address: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly namespace: string;
  private exited;
  private done;
  private constructor();
  /**
   * Start containerd with a config of its own under `o.dir` and wait (bounded) until it serves its
   * API and the snapshotters asked for loaded; on failure it is stopped and the error carries its log.
   */
  static start(o: ContainerdOptions): Promise<Containerd>;
  /** Poll (every 50 ms) until the socket accepts and `ctr version` answers; fail at once if containerd exits. */
  private waitReady;
  /** `ctr plugins ls`, parsed. */
  plugins(): Promise<PluginStatus[]>;
  /**
   * `ctr --address SOCK --namespace NS ARGS...`: its stdout. Throws a CtrError on a non-zero exit
   * or after `timeoutMs`, with ctr's stderr and the tail of containerd's log.
   */
  ctr(args: string[], o?: CtrOptions): Promise<string>;
  /** containerd's log; the last `lines` lines when given. */
  logText(lines?: number): Promise<string>;
  /**
   * Stop it and what it started: tasks killed and containers removed (while it still serves), then
   * SIGTERM (SIGKILL after `termMs`), any shim of ours still alive killed (shims outlive containerd
   * by design), mounts left under `dir` unmounted, and the /run tmpfs released.
   */
  stop(termMs?: number): Promise<void>;
  /** Kill every task in our namespace and remove every container (with their snapshots). */
  private removeContainers;
}
/** Which of containerd, ctr and runc this machine lacks (Debian: apt-get install containerd runc). */
export function missingContainerdTools(): string[];
