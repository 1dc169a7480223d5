// The proxy plugin as containerd meets it: `devmapper snapshotter serve` in a
// child process, waited for by its "serving" line (an event, not a delay),
// with its standard error kept for the assertions and for failures.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dm, loop } from '../../lib/index';
import { RUN, sparseFile } from './helpers';

const run = promisify(execFile);
const bin = join(__dirname, '..', '..', 'bin', 'devmapper.js');

/** A running `devmapper snapshotter serve`. */
export interface Proxy {
  child: ChildProcess;
  socket: string;
  /** Lines it wrote to standard error so far. */
  errors: string[];
  /** Everything it printed, for a failure's message. */
  output: () => string;
  /** Resolves with the exit code (or signal name) once it exits. */
  exited: Promise<number | string>;
  /** Resolves with the standard error lines that start with `prefix` once there are `count` (they may arrive after the reply). */
  linesOf: (prefix: string, count: number, bound?: number) => Promise<string[]>;
}

/**
 * Start the plugin on `socket` with the serve flags `args` (`debug`: trace
 * every ioctl to standard error); resolves once it listens, or rejects with
 * its output if it exits first.
 */
export async function startProxy(socket: string, args: string[], { debug = false, bound = 120_000 } = {}): Promise<Proxy> {
  const argv = [bin, ...(debug ? ['--debug'] : []), 'snapshotter', 'serve', '--socket', socket, ...args];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const errors: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('devmapper snapshotter: serving')) resolve();
    });
    void exited.then((c) => reject(new Error(`the plugin exited (${c}) before it listened:\n${out}${err}`)));
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    errors.splice(0, errors.length, ...err.split('\n').filter((l) => l !== ''));
  });
  const linesOf = (prefix: string, count: number, within = 60_000) =>
    new Promise<string[]>((resolve, reject) => {
      // Runs after the listener above (registered first) has split the new output.
      const check = () => {
        const found = errors.filter((l) => l.startsWith(prefix));
        if (found.length < count) return;
        child.stderr!.off('data', check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        child.stderr!.off('data', check);
        reject(new Error(`expected ${count} lines starting '${prefix}' within ${within} ms:\n${out}${err}`));
      }, within);
      child.stderr!.on('data', check);
      check();
    });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the plugin did not listen within ${bound} ms:\n${out}${err}`)), bound);
  });
  try {
    await Promise.race([ready, late]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { child, socket, errors, exited, linesOf, output: () => out + err };
}

/** SIGTERM the plugin and wait for it to exit; resolves with its exit code. */
export async function stopProxy(p: Proxy): Promise<number | string> {
  p.child.kill('SIGTERM');
  return p.exited;
}

/**
 * Whether a thread of process `pid`, or of a child of it, is in
 * uninterruptible sleep (state D): waiting in the kernel, e.g. for I/O a
 * suspended device holds.
 */
export async function waitingInKernel(pid: number): Promise<boolean> {
  const fields = async (stat: string) => (await readFile(stat, 'utf8').catch(() => '')).replace(/^.*\) /s, '').split(' ');
  const pids = [pid];
  for (const e of await readdir('/proc')) if (/^\d+$/.test(e) && (await fields(`/proc/${e}/stat`))[1] === String(pid)) pids.push(Number(e));
  for (const p of pids) {
    for (const t of await readdir(`/proc/${p}/task`).catch(() => []))
      if ((await fields(`/proc/${p}/task/${t}/stat`))[0] === 'D') return true;
  }
  return false;
}

/** Resolve once `pid` waits in the kernel (see waitingInKernel); rejects with `context()` after `bound` ms. */
export async function untilWaitingInKernel(pid: number, context: () => string, bound = 120_000): Promise<void> {
  const end = Date.now() + bound;
  while (!(await waitingInKernel(pid))) {
    if (Date.now() > end) throw new Error(`process ${pid} never waited in the kernel within ${bound} ms:\n${context()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Loop devices for a pool made on given devices, its data device a linear mapping the test can suspend. */
export interface HoldablePool {
  /** The linear device over the data loop device: suspend it and the pool's writes and flushes wait. */
  data: dm.DeviceInfo;
  metadataPath: string;
  metadataFile: string;
  /** The serve flags that make the pool on them. */
  flags: string[];
}

/** Devices for `--data-dev`/`--metadata-dev` whose data side can be held (dm.suspend(data.name)). */
export async function holdablePool(tag: string, dataBytes = 1 << 30, metadataBytes = 16 << 20): Promise<HoldablePool> {
  const dataLoop = await loop.attach(await sparseFile(`${tag}-data`, dataBytes));
  const metadataFile = await sparseFile(`${tag}-meta`, metadataBytes);
  const metaLoop = await loop.attach(metadataFile);
  const data = await dm.create(`${RUN}${tag}-data`, {
    table: [{ start: 0, length: dataBytes / 512, type: 'linear', params: `${dataLoop.path} 0` }],
  });
  return { data, metadataPath: metaLoop.path, metadataFile, flags: ['--data-dev', data.path, '--metadata-dev', metaLoop.path] };
}

/** The thin ids of a live pool, from thin_dump of its metadata snapshot (reserved and released around it). */
export async function liveThinIds(poolName: string, metadataPath: string): Promise<number[]> {
  await dm.message(poolName, 'reserve_metadata_snap');
  try {
    const { stdout } = await run('thin_dump', ['--metadata-snap', metadataPath], { maxBuffer: 64 << 20 });
    return [...stdout.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  } finally {
    await dm.message(poolName, 'release_metadata_snap');
  }
}
