// The proxy plugin as containerd meets it: `devmapper snapshotter serve` in a
// child process, waited for by its "serving" line (an event, not a delay),
// with its standard error kept for the assertions and for failures.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

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
