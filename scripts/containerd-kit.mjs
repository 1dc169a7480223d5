// A real containerd for end-to-end kernel tests and benchmarks: started with its own config (root,
// state and socket under one directory), its log kept in a file for failures, `ctr` calls against
// it, and a stop that leaves nothing behind (tasks, shims, mounts). Works in the project's VMs
// (docs/vm.md) and on a host with device-mapper, as root.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
// Plain mount(8)/umount(8): the kit is a script of its own (the benchmark uses it too), not a user of the library.
const exec = promisify(execFile);
const mount = (source, target, type, options) =>
  exec('mount', ['-t', type, ...(options ? ['-o', options] : []), source, target]).then(() => undefined);
const umount = (target, o = {}) => exec('umount', [...(o.detach ? ['-l'] : []), target]).then(() => undefined);
/** A failed ctr call: its exit, stderr, and the tail of containerd's log (what the daemon saw). */
export class CtrError extends Error {
  stdout;
  stderr;
  constructor(message, stdout, stderr) {
    super(message);
    this.stdout = stdout;
    this.stderr = stderr;
    this.name = 'CtrError';
  }
}
/**
 * Plugins off by default: CRI (CNI networking, a pause image to pull), opt (it makes /opt/containerd
 * on the host's disk), and the snapshotters that only skip here (aufs runs modprobe to find out).
 */
const DISABLED = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.internal.v1.opt',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
];
const tomlString = (s) => JSON.stringify(s); // JSON's escapes are TOML basic-string escapes
/** The mount at each mount point, from /proc/self/mountinfo (fields 5 and, after the ' - ' separator, the type). */
async function mountTypes() {
  const out = new Map();
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    out.set(pre.split(' ')[4], post.split(' ')[0]); // later lines are mounted on top: last wins
  }
  return out;
}
/**
 * cgroup2 on /sys/fs/cgroup, which runc needs to place a container. The VM mounts none; a host's
 * own hierarchy (v2, or v1's tmpfs) is left as it is. Left mounted after: it is the kernel's one
 * hierarchy, and unmounting fails while any cgroup exists.
 */
export async function ensureCgroup2() {
  if ((await mountTypes()).has('/sys/fs/cgroup')) return;
  await mount('cgroup2', '/sys/fs/cgroup', 'cgroup2', '');
}
/** containerd's config (version 2) for `o`: everything under `dir`. */
export function containerdConfig(o, paths) {
  const lines = [
    'version = 2',
    `root = ${tomlString(paths.root)}`,
    `state = ${tomlString(paths.state)}`,
    `disabled_plugins = ${JSON.stringify([...DISABLED, ...(o.disabledPlugins ?? [])])}`,
    '',
    '[grpc]',
    `  address = ${tomlString(paths.address)}`,
    '',
    '[debug]',
    `  level = ${tomlString(o.logLevel ?? 'info')}`,
  ];
  if (o.devmapper) {
    lines.push(
      '',
      '[plugins."io.containerd.snapshotter.v1.devmapper"]',
      `  pool_name = ${tomlString(o.devmapper.poolName)}`,
      `  root_path = ${tomlString(o.devmapper.rootPath)}`,
      `  base_image_size = ${tomlString(o.devmapper.baseImageSize ?? '64MB')}`,
    );
  }
  if (o.manualGc) {
    // No start-up collection, and no count of deletions or mutations that schedules one.
    lines.push(
      '',
      '[plugins."io.containerd.gc.v1.scheduler"]',
      '  deletion_threshold = 1000000000',
      '  mutation_threshold = 1000000000',
      '  startup_delay = "1000000s"',
      // After a collection it asked for, the next comes (if anything was deleted) no sooner than
      // its average time over this fraction: 0.0001 makes that minutes.
      '  pause_threshold = 0.0001',
    );
  }
  for (const [name, address] of Object.entries(o.proxySnapshotters ?? {})) {
    lines.push('', `[proxy_plugins.${tomlString(name)}]`, '  type = "snapshot"', `  address = ${tomlString(address)}`);
  }
  return `${lines.join('\n')}\n`;
}
/**
 * The environment for containerd and ctr: the caller's, less the sanitizer run's preloaded libasan
 * (scripts/test.mjs), which is there for the addon in node, not for Go programs and their runc.
 */
function toolEnv() {
  const env = { ...process.env };
  for (const k of ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS']) delete env[k];
  // dmsetup, mkfs and runc are under sbin; the caller's PATH may lack it.
  env.PATH = `${env.PATH ?? '/usr/bin:/bin'}:/usr/local/sbin:/usr/sbin:/sbin`;
  return env;
}
/** Whether a unix socket at `path` accepts a connection (cheaper to poll than a ctr run). */
function accepts(path) {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
/** Pids of processes whose argv holds `arg` (the shims name the daemon's socket with -address). */
async function pidsWithArg(arg) {
  const pids = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (argv.split('\0').includes(arg)) pids.push(Number(entry));
  }
  return pids;
}
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/** A containerd daemon of our own; see `Containerd.start`. */
export class Containerd {
  dir;
  child;
  address;
  configFile;
  logFile;
  namespace;
  exited;
  done = false;
  constructor(dir, namespace, child) {
    this.dir = dir;
    this.child = child;
    this.address = `${dir}/containerd.sock`;
    this.configFile = `${dir}/config.toml`;
    this.logFile = `${dir}/containerd.log`;
    this.namespace = namespace;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.done = true;
        resolve(code ?? (signal ? -1 : null));
      });
      child.once('error', () => {
        this.done = true;
        resolve(null);
      });
    });
  }
  /**
   * Start containerd with a config of its own under `o.dir` and wait (bounded) until it serves its
   * API and the snapshotters asked for loaded; on failure it is stopped and the error carries its log.
   */
  static async start(o) {
    await ensureCgroup2();
    await mkdir(o.dir, { recursive: true });
    const paths = { root: `${o.dir}/root`, state: `${o.dir}/state`, address: `${o.dir}/containerd.sock` };
    await writeFile(`${o.dir}/config.toml`, containerdConfig(o, paths));
    const log = openSync(`${o.dir}/containerd.log`, 'a');
    let child;
    try {
      child = spawn('containerd', ['--config', `${o.dir}/config.toml`], {
        stdio: ['ignore', log, log],
        env: {
          ...toolEnv(),
          // The devmapper snapshotter's dmsetup then makes its own /dev/mapper nodes instead of
          // waiting for udev, which the VM does not run.
          ...(o.devmapper ? { DM_DISABLE_UDEV: '1' } : {}),
          ...o.env,
        },
      });
    } finally {
      closeSync(log);
    }
    const d = new Containerd(o.dir, o.namespace ?? 'devmapper-test', child);
    try {
      await d.waitReady(o.readyTimeoutMs ?? 120_000);
      const want = [...(o.devmapper ? ['devmapper'] : []), ...Object.keys(o.proxySnapshotters ?? {})];
      const plugins = await d.plugins();
      for (const id of want) {
        const p = plugins.find((p) => p.type === 'io.containerd.snapshotter.v1' && p.id === id);
        if (p?.status !== 'ok') throw new Error(`snapshotter ${id}: ${p ? `status ${p.status}` : 'not listed'}`);
      }
    } catch (e) {
      await d.stop().catch(() => undefined);
      throw new Error(`containerd did not start: ${e.message}\n--- ${d.logFile} ---\n${await d.logText()}`, { cause: e });
    }
    return d;
  }
  /** Poll (every 50 ms) until the socket accepts and `ctr version` answers; fail at once if containerd exits. */
  async waitReady(timeoutMs) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.done) throw new Error(`containerd exited (${await this.exited})`);
      if (await accepts(this.address)) {
        const ok = await this.ctr(['version'], { timeoutMs: Math.max(1000, end - Date.now()) }).then(
          () => true,
          () => false,
        );
        if (ok) return;
      }
      if (Date.now() > end) throw new Error(`not serving on ${this.address} after ${timeoutMs} ms`);
      await sleep(50);
    }
  }
  /** `ctr plugins ls`, parsed. */
  async plugins() {
    const lines = (await this.ctr(['plugins', 'ls'])).trim().split('\n').slice(1);
    return lines.map((l) => {
      const f = l.trim().split(/\s+/);
      return { type: f[0], id: f[1], status: f[f.length - 1] };
    });
  }
  /**
   * `ctr --address SOCK --namespace NS ARGS...`: its stdout. Throws a CtrError on a non-zero exit
   * or after `timeoutMs`, with ctr's stderr and the tail of containerd's log.
   */
  async ctr(args, o = {}) {
    const argv = ['--address', this.address, '--namespace', this.namespace, ...args];
    const child = spawn('ctr', argv, { stdio: ['pipe', 'pipe', 'pipe'], env: toolEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdin.on('error', () => undefined); // ctr may exit before reading all of it
    child.stdin.end(o.input);
    const timeoutMs = o.timeoutMs ?? 240_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const status = await new Promise((resolve) => {
      child.once('error', (e) => resolve(e.message));
      child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    }).finally(() => clearTimeout(timer));
    if (status === 0) return stdout;
    const why = timedOut ? `killed after ${timeoutMs} ms` : `exit ${status}`;
    throw new CtrError(
      `ctr ${args.join(' ')}: ${why}\n${stderr.trim()}\n--- containerd log (tail) ---\n${await this.logText(40)}`,
      stdout,
      stderr,
    );
  }
  /** containerd's log; the last `lines` lines when given. */
  async logText(lines) {
    const text = await readFile(this.logFile, 'utf8').catch((e) => `(no log: ${e.message})`);
    return lines === undefined ? text : text.trimEnd().split('\n').slice(-lines).join('\n');
  }
  /**
   * Stop it and what it started: tasks killed and containers removed (while it still serves), then
   * SIGTERM (SIGKILL after `termMs`), any shim of ours still alive killed (shims outlive containerd
   * by design), and mounts left under `dir` unmounted.
   */
  async stop(termMs = 60_000) {
    // Only while it serves: ctr would otherwise wait for the socket.
    if (!this.done && (await accepts(this.address))) await this.removeContainers().catch(() => undefined);
    if (!this.done) {
      this.child.kill('SIGTERM');
      const killed = await Promise.race([this.exited.then(() => false), sleep(termMs).then(() => true)]);
      if (killed) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    const end = Date.now() + 30_000;
    for (let pids = await pidsWithArg(this.address); pids.length > 0; pids = (await pidsWithArg(this.address)).filter(alive)) {
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      if (Date.now() > end) throw new Error(`containerd's shims ${pids.join(', ')} outlived SIGKILL for 30 s`);
      await sleep(50);
    }
    const points = [...(await mountTypes()).keys()].filter((m) => m.startsWith(`${this.dir}/`));
    for (const m of points.reverse()) await umount(m).catch(() => umount(m, { detach: true }));
  }
  /** Kill every task in our namespace and remove every container (with their snapshots). */
  async removeContainers() {
    const ids = (s) => s.split('\n').filter(Boolean);
    for (const id of ids(await this.ctr(['tasks', 'ls', '-q']))) {
      await this.ctr(['tasks', 'kill', '--signal', 'SIGKILL', id]).catch(() => undefined);
      await this.ctr(['tasks', 'delete', '--force', id]).catch(() => undefined);
    }
    for (const id of ids(await this.ctr(['containers', 'ls', '-q']))) await this.ctr(['containers', 'delete', id]).catch(() => undefined);
  }
}

/** Which of containerd, ctr and runc this machine lacks (Debian: apt-get install containerd runc). */
export function missingContainerdTools() {
  return ['containerd', 'ctr', 'runc'].filter((t) => spawnSync('sh', ['-c', `PATH=$PATH:/usr/sbin:/sbin command -v ${t}`]).status !== 0);
}
