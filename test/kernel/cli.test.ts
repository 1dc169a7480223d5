// The devmapper command against the real kernel, as a person would run it.
import { execFile, spawn } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm } from '../../lib/index';
import { documentedShapes, shapeProblems } from '../cli-json-shapes';
import { gone, RUN, SCRATCH, sparseFile, sweep } from './helpers';

const bin = join(__dirname, '..', '..', 'bin', 'devmapper.js');
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [bin, ...args], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr })),
  );
}
async function json<T = unknown>(...args: string[]): Promise<T> {
  const r = await cli('--json', ...args);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}
/** The CLI with `input` on its stdin. */
function cliInput(input: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [bin, ...args], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
    child.stdin!.end(input);
  });
}
const SHAPES = documentedShapes();
/** `devmapper VERB ARGS --json`, checked against the verb's shape in docs/cli-json.md (`as`: another verb's shape). */
async function shaped<T = Record<string, unknown>>(verb: string, args: string[] = [], as = verb): Promise<T> {
  const r = await cli(...verb.split(' '), ...args, '--json');
  expect(r.code, `${verb} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  const value = JSON.parse(r.stdout) as T;
  expect(shapeProblems(value, SHAPES.get(as)!), `${verb} ${args.join(' ')}`).toEqual([]);
  return value;
}

beforeAll(sweep);
afterAll(async () => {
  for (const d of await dm.list()) if (d.name.startsWith('devmapper-')) await dm.remove(d.name).catch(() => undefined);
  await sweep();
});

describe('devmapper CLI', () => {
  it('version, create, ls, info, table, status, message, suspend, resume, remove', async () => {
    const v = await shaped<{ driver: string; targets: Array<{ name: string }> }>('version');
    expect(v.driver).toMatch(/^4\.\d+\.\d+$/);
    expect(v.targets.map((t) => t.name)).toContain('thin-pool');
    const name = `${RUN}cli`;
    expect((await cli('create', name, '--table', '0 1024 zero; 1024 1024 error')).stdout.trim()).toBe(`/dev/mapper/${name}`);
    expect((await json<Array<{ name: string }>>('ls')).map((d) => d.name)).toContain(name);
    expect((await cli('table', name)).stdout.trim()).toBe('0 1024 zero\n1024 1024 error');
    expect((await cli('info', name)).stdout).toMatch(/State: ACTIVE[\s\S]*Tables present: LIVE/);
    expect(await cli('suspend', name)).toMatchObject({ code: 0 });
    expect((await json<{ suspended: boolean }>('info', name)).suspended).toBe(true);
    expect(await cli('resume', name)).toMatchObject({ code: 0 });
    expect((await cli('message', name, '0', '@stats_create', '-', '/1')).stdout.trim()).toMatch(/^\d+$/);
    const bad = await cli('create', `${RUN}bad`, '--table', '0 2048 linear /dev/nosuch 0');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ENODEV — a device the table names does not exist or is not a block device/);
    await expect(dm.info(`${RUN}bad`)).rejects.toMatchObject({ code: 'ENXIO' }); // undone
    const busy = await cli('remove', 'no-such-device-here');
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain("no such device-mapper device 'no-such-device-here'");
    expect(await cli('remove', name)).toMatchObject({ code: 0 });
    const forced = `${RUN}cli-force`;
    await cli('create', forced, '--table', '0 2048 zero');
    expect((await cli('discard', forced)).stderr).toContain('does not take discards');
    expect((await cli('discard', forced, '--offset', '100')).stderr).toContain('multiple of 512');
    expect(await cli('remove', forced, '--force')).toMatchObject({ code: 0 });
    await expect(dm.info(forced)).rejects.toMatchObject({ code: 'ENXIO' });
  });

  it('losetup spellings, reload, rename, deps, mknodes, and the --json shapes on devices of different kinds', async () => {
    const fileA = await sparseFile('cli-json-a', 8 << 20);
    const fileB = await sparseFile('cli-json-b', 4 << 20);
    // Loop devices: losetup's -f --show with an offset, size limit and sector size; a read-only one; -f alone.
    const a = (await cli('loop', '-f', '--show', '-o', '1M', '--sizelimit', '4M', '--sector-size', '4096', fileA)).stdout.trim();
    expect(a).toMatch(/^\/dev\/loop\d+$/);
    const b = await shaped<{ path: string; directIo: boolean }>('loop attach', [fileB, '-r']);
    expect(typeof b.directIo).toBe('boolean');
    expect((await shaped<{ directIo: null }>('loop attach', ['-f'])).directIo).toBeNull();
    const [infoA, infoB, loops] = await Promise.all([
      shaped('loop info', [a]),
      shaped('loop info', [b.path]),
      shaped<Array<{ path: string }>>('loop ls'),
    ]);
    expect(infoA).toMatchObject({
      backingFile: fileA,
      offset: 1 << 20,
      sizeLimit: 4 << 20,
      blockSize: 4096,
      size: 4 << 20,
      readOnly: false,
    });
    expect(infoB).toMatchObject({ backingFile: fileB, offset: 0, sizeLimit: 0, blockSize: 512, size: 4 << 20, readOnly: true });
    expect(loops.map((l) => l.path)).toEqual(expect.arrayContaining([a, b.path]));

    // A linear device with a uuid, a striped one on it, one without table or uuid.
    const [lin, str, bare] = [`${RUN}json-lin`, `${RUN}json-str`, `${RUN}json-bare`];
    const linInfo = await shaped<{ major: number; minor: number }>('create', [lin, '-u', `${RUN}uuid`, '--table', `0 8192 linear ${a} 0`]);
    expect(linInfo).toMatchObject({ uuid: `${RUN}uuid`, activeTable: true, targetCount: 1 });
    expect(await shaped('create', [bare])).toMatchObject({ uuid: null, activeTable: false, targetCount: 0 });
    expect(await cli('create', str, '--table', `0 8192 striped 1 128 /dev/mapper/${lin} 0`)).toMatchObject({ code: 0 });

    // reload: from a table file (with a comment), and from stdin; the table waits in the inactive slot until resume.
    const tableFile = `${SCRATCH}/zero.table`;
    await writeFile(tableFile, '# dmsetup table files may have comments\n0 2048 zero\n');
    expect(await cli('reload', bare, tableFile)).toMatchObject({ code: 0 });
    expect(await cliInput(`0 8192 striped 1 256 /dev/mapper/${lin} 0\n`, 'reload', str)).toMatchObject({ code: 0 });
    const [bareLive, bareInactive, bareInfo, strInactive] = await Promise.all([
      shaped('table', [bare]),
      shaped('table', [bare, '--inactive']),
      shaped('info', [bare]),
      shaped('table', [str, '--inactive']),
    ]);
    expect(bareLive).toEqual([]);
    expect(bareInactive).toEqual([{ start: 0, length: 2048, type: 'zero', params: '' }]);
    expect(bareInfo).toMatchObject({ activeTable: false, inactiveTable: true, uuid: null });
    expect(strInactive).toEqual([{ start: 0, length: 8192, type: 'striped', params: `1 256 ${linInfo.major}:${linInfo.minor} 0` }]);
    expect((await cli('table', str)).stdout).toContain('striped 1 128');
    expect((await Promise.all([cli('resume', bare), cli('resume', str)])).map((r) => r.code)).toEqual([0, 0]);
    expect((await cli('table', str)).stdout).toContain('striped 1 256');

    // rename, and --setuuid on a device that has none.
    const str2 = `${RUN}json-str2`;
    expect(await cli('rename', str, str2)).toMatchObject({ code: 0 });
    expect([existsSync(`/dev/mapper/${str}`), existsSync(`/dev/mapper/${str2}`)]).toEqual([false, true]);
    expect(await cli('rename', bare, '--setuuid', `${RUN}uuid-bare`)).toMatchObject({ code: 0 });
    expect((await cli('rename', lin, '--setuuid', `${RUN}uuid-again`)).stderr).toContain('already has a uuid');

    // The read verbs on each kind: linear active and suspended, striped (no grammar: parsed null), zero.
    expect(await cli('suspend', lin)).toMatchObject({ code: 0 });
    const [infos, tables, statuses, deps, listed] = await Promise.all([
      Promise.all([lin, str2, bare].map((n) => shaped('info', [n]))),
      Promise.all([lin, str2, bare].map((n) => shaped('table', [n]))),
      Promise.all([lin, str2, bare].map((n) => shaped<Array<{ type: string; parsed: unknown }>>('status', [n]))),
      Promise.all([lin, str2, bare].map((n) => shaped('deps', [n]))),
      shaped<Array<{ name: string; uuid: string | null }>>('ls'),
    ]);
    expect(infos.map((i) => [i.suspended, i.uuid])).toEqual([
      [true, `${RUN}uuid`],
      [false, null],
      [false, `${RUN}uuid-bare`],
    ]);
    expect(tables.map((t) => t.length)).toEqual([1, 1, 1]);
    expect(statuses.map((st) => [st[0]!.type, st[0]!.parsed])).toEqual([
      ['linear', {}],
      ['striped', null],
      ['zero', {}],
    ]);
    const loopName = a.slice('/dev/'.length);
    expect(deps).toEqual([
      [{ major: 7, minor: Number(loopName.slice(4)), blockDevice: loopName, name: loopName }],
      [{ major: linInfo.major, minor: linInfo.minor, blockDevice: `dm-${linInfo.minor}`, name: lin }],
      [],
    ]);
    expect(
      listed
        .filter((d) => d.name.startsWith(`${RUN}json`))
        .map((d) => d.uuid)
        .sort(),
    ).toEqual([`${RUN}uuid`, `${RUN}uuid-bare`, null].sort());
    expect(await cli('resume', lin)).toMatchObject({ code: 0 });
    expect((await cli('deps', str2)).stdout).toBe(`1 dependencies\t: (${linInfo.major}, ${linInfo.minor})\n`);
    expect((await cli('deps', str2, '-o', 'devname')).stdout).toBe(`1 dependencies\t: (${lin})\n`);
    expect((await cli('deps', lin, '-o', 'blkdevname')).stdout).toBe(`1 dependencies\t: (${loopName})\n`);

    // mknodes: a lost node comes back, one device or all.
    await unlink(`/dev/mapper/${str2}`);
    const one = await shaped<Array<{ name: string; path: string }>>('mknodes', [str2]);
    expect(one.map((n) => n.path)).toEqual([`/dev/mapper/${str2}`]);
    expect(lstatSync(`/dev/mapper/${str2}`).isBlockDevice()).toBe(true);
    await unlink(`/dev/mapper/${lin}`);
    const all = await shaped<Array<{ name: string }>>('mknodes');
    expect(all.map((n) => n.name)).toEqual(expect.arrayContaining([lin, str2, bare]));
    expect(lstatSync(`/dev/mapper/${lin}`).isBlockDevice()).toBe(true);

    const removed = await Promise.all([str2, bare].map((n) => shaped('remove', [n])));
    expect(removed).toEqual([
      { deferred: false, removed: true },
      { deferred: false, removed: true },
    ]);
    expect(await shaped('remove', [lin])).toEqual({ deferred: false, removed: true });
    // losetup's -d takes several devices.
    expect(await cli('loop', '-d', a, b.path)).toMatchObject({ code: 0 });
    expect((await cli('loop', 'info', a)).stderr).toContain('is not attached');
  });

  it('loop attach, ls, info, detach', async () => {
    const file = await sparseFile('cli-loop', 8 << 20);
    const dev = (await cli('loop', 'attach', file, '--offset', '1M')).stdout.trim();
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    expect(await json('loop', 'info', dev)).toMatchObject({ backingFile: file, offset: 1 << 20, size: 7 << 20 });
    expect((await cli('loop', 'ls')).stdout).toContain(file);
    expect(await cli('loop', 'detach', dev)).toMatchObject({ code: 0 });
  });

  it('pool create, thin create/snapshot/activate/deactivate/delete, pool status/resize/destroy', async () => {
    const dir = `${SCRATCH}/cli-pool`;
    const created = await shaped<{ name: string; dataFile: string | null }>('pool create', [
      '--dir',
      dir,
      '--name',
      `${RUN}clipool`,
      '--data-size',
      '256M',
      '--metadata-size',
      '8M',
    ]);
    const pool = created.name;
    expect(pool).toBe(`${RUN}clipool`);
    expect(created.dataFile).toBe(`${dir}/data`);
    // A pool on block devices (linear devices on loop devices here, which it does not see through): the same keys, no files.
    const loops = await Promise.all(
      [['cli-direct-data', 64 << 20] as const, ['cli-direct-meta', 4 << 20] as const].map(async ([f, size]) =>
        (await cli('loop', '-f', '--show', await sparseFile(f, size))).stdout.trim(),
      ),
    );
    const [dataDev, metaDev] = await Promise.all(
      ['data', 'meta'].map(
        async (what, i) =>
          (
            await dm.create(`${RUN}clidirect-${what}`, {
              table: [{ start: 0, length: (i === 0 ? 64 << 20 : 4 << 20) / 512, type: 'linear', params: `${loops[i]} 0` }],
            })
          ).path,
      ),
    );
    const direct = await shaped<{ name: string; dataFile: string | null }>('pool create', [
      '--name',
      `${RUN}clidirect`,
      '--data-dev',
      dataDev!,
      '--metadata-dev',
      metaDev!,
    ]);
    expect(direct.dataFile).toBeNull();
    const [loopStatus, directStatus, poolDeps] = await Promise.all([
      shaped('pool status', [pool]),
      shaped('pool status', [direct.name]),
      shaped<Array<{ name: string }>>('deps', [direct.name]),
    ]);
    expect(loopStatus).toMatchObject({ dataFile: `${dir}/data`, usage: { data: { hostFree: expect.any(Number) } } });
    expect(directStatus).toMatchObject({ dataFile: null, metadataFile: null, usage: { data: { hostFree: null, total: 64 << 20 } } });
    expect(poolDeps.map((d) => `/dev/mapper/${d.name}`).sort()).toEqual([dataDev, metaDev].sort());
    expect(await cli('pool', 'destroy', direct.name)).toMatchObject({ code: 0 });
    for (const d of [dataDev!, metaDev!]) await dm.remove(d.slice('/dev/mapper/'.length));
    expect(await cli('loop', '-d', ...loops)).toMatchObject({ code: 0 });
    expect((await cli('thin', 'create', pool)).stdout.trim()).toBe('0');
    expect((await cli('thin', 'snapshot', pool, '5', '0')).stdout.trim()).toBe('5');
    expect((await cli('thin', 'activate', pool, '5', '--name', `${RUN}clithin`, '--size', '64M')).stdout.trim()).toBe(
      `/dev/mapper/${RUN}clithin`,
    );
    const [poolLines, thinLines] = await Promise.all([
      shaped<Array<{ type: string; parsed: object | null }>>('status', [pool]),
      shaped<Array<{ type: string; parsed: object | null }>>('status', [`${RUN}clithin`]),
    ]);
    expect(poolLines[0]).toMatchObject({ type: 'thin-pool', parsed: { mode: 'rw' } });
    expect(thinLines[0]).toMatchObject({ type: 'thin', parsed: { mappedSectors: 0 } });
    const status = await cli('status', pool);
    expect(status.stdout).toMatch(/thin-pool\n[\s\S]*mode: rw/);
    expect((await cli('status', pool, '--raw')).stdout).toMatch(/thin-pool 0 \d+\/\d+ 0\/4096 - rw/);
    const human = await cli('pool', 'status', pool);
    expect(human.stdout).toMatch(/Pool Blocksize: 65.54 kB[\s\S]*Data Space Total: 268.4 MB/);
    expect(await json('discard', `${RUN}clithin`, '--offset', '1M', '--length', '4M')).toEqual({ offset: 1 << 20, length: 4 << 20 });
    expect(await shaped('thin usage', [pool, '5'])).toMatchObject({
      thinId: 5,
      source: 'active',
      mappedSectors: 0,
      highestMappedSector: null,
    });
    expect(await cli('thin', 'deactivate', `${RUN}clithin`)).toMatchObject({ code: 0 });
    expect((await cli('thin', 'usage', pool, '5')).stdout.trim()).toBe('0 sectors mapped (0 bytes), highest -');
    expect(await shaped('thin usage', [pool, '5'])).toMatchObject({ source: 'activation', highestMappedSector: null });
    expect(await cli('thin', 'delete', pool, '5')).toMatchObject({ code: 0 });
    expect((await cli('pool', 'resize', pool, '--data-size', '512M')).stdout).toContain('data 536.9 MB');
    expect((await json<{ totalDataBlocks: number }>('pool', 'status', pool)).totalDataBlocks).toBe(8192);
    expect(await cli('pool', 'destroy', pool)).toMatchObject({ code: 0 });
    await expect(dm.info(pool)).rejects.toMatchObject({ code: 'ENXIO' });
  });

  it('pool watch prints events as JSON lines, grows the pool with --auto-extend, and stops on ^C', async () => {
    const dir = `${SCRATCH}/cli-watch`;
    const pool = (
      await cli('pool', 'create', '--dir', dir, '--name', `${RUN}cliwatch`, '--data-size', '64M', '--metadata-size', '4M')
    ).stdout.trim();
    expect((await cli('pool', 'watch', pool, '--auto-extend', '80')).code).toBe(2);
    expect((await cli('pool', 'watch', pool, '--max', '1G')).code).toBe(2);
    const child = spawn(process.execPath, [bin, '--json', 'pool', 'watch', pool, '--auto-extend', '80:20']);
    const lines: Array<{ type: string; to?: number }> = [];
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      for (let i; (i = buffered.indexOf('\n')) >= 0; buffered = buffered.slice(i + 1)) lines.push(JSON.parse(buffered.slice(0, i)));
    });
    const seen = async (type: string) => {
      for (const end = Date.now() + 60_000; !lines.some((l) => l.type === type);) {
        if (Date.now() > end) throw new Error(`no '${type}' line: ${JSON.stringify(lines)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await seen('status');
    expect((await cli('thin', 'create', pool, '1')).code).toBe(0);
    const dev = (await cli('thin', 'activate', pool, '1', '--name', `${RUN}cliwatch-thin`, '--size', '128M')).stdout.trim();
    await new Promise((resolve, reject) =>
      execFile('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', 'count=56', 'oflag=direct', 'status=none'], (e) =>
        e ? reject(e) : resolve(undefined),
      ),
    );
    await seen('extended');
    expect(lines.find((l) => l.type === 'extended')!.to).toBe(Math.ceil(((64 << 20) * 1.2) / 65536) * 65536);
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(await cli('thin', 'deactivate', `${RUN}cliwatch-thin`)).toMatchObject({ code: 0 });
    expect(await cli('pool', 'destroy', pool)).toMatchObject({ code: 0 });
  });

  it('set init (docker info block), info, create, mount, write, unmount, ls, rm, close across separate calls', async () => {
    const root = `${SCRATCH}/cli-set`;
    const missing = await cli('set', 'info', '--root', root);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no device set under ${root}: devmapper set init --root ${root} makes one`);
    expect(existsSync(root)).toBe(false); // info made nothing
    const info = await cli('set', 'init', '--root', root);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(
      /^Storage Driver: devicemapper\n Pool Name: devmapper-\d+:\d+-\d+-pool\n Pool Blocksize: 65.54 kB\n Base Device Size: 10.74 GB\n Backing Filesystem: ext4\n Data file: \/dev\/loop\d+/,
    );
    expect(info.stdout).toMatch(/Data Space Total: 107.4 GB[\s\S]*Metadata Space Total: 2.147 GB[\s\S]*Deferred Deleted Device Count: 0/);
    const j = await shaped<{ dataSpaceTotal: number; baseDeviceSize: number; poolName: string }>('set info', ['--root', root]);
    expect(j).toMatchObject({ dataSpaceTotal: 100 * 2 ** 30, baseDeviceSize: 10 * 2 ** 30 });
    expect(await cli('set', 'create', 'img', '--root', root)).toMatchObject({ code: 0 });
    expect(await cli('set', 'create', 'ctr', '--parent', 'img', '--root', root)).toMatchObject({ code: 0 });
    const mnt = `${SCRATCH}/cli-mnt`;
    expect(await cli('set', 'mount', 'ctr', mnt, '--root', root)).toMatchObject({ code: 0 });
    await writeFile(`${mnt}/hello`, 'from the cli'); // mounted between calls
    expect(await readFile(`${mnt}/hello`, 'utf8')).toBe('from the cli');
    const ls = await shaped<Array<{ id: string; mountPoint: string | null }>>('set ls', ['--root', root]);
    expect(Object.fromEntries(ls.map((d) => [d.id, d.mountPoint]))).toEqual({ img: null, ctr: mnt });
    expect((await cli('set', 'rm', 'ctr', '--root', root)).code).toBe(1); // still mounted
    expect(await shaped('set usage', ['ctr', '--root', root])).toMatchObject({
      id: 'ctr',
      size: 10 * 2 ** 30,
      mappedBytes: expect.any(Number),
    });
    expect((await cli('set', 'usage', 'ctr', '--root', root)).stdout).toMatch(/Size: 10.74 GB\n Mapped: .* \(\d+ sectors\)/);
    expect(await cli('set', 'unmount', 'ctr', '--root', root)).toMatchObject({ code: 0 });
    expect(await cli('set', 'rm', 'ctr', '--root', root)).toMatchObject({ code: 0 });
    expect((await cli('set', 'ls', '--root', root)).stdout).toMatch(
      /^ID\s+PARENT\s+THIN-ID\s+SIZE\s+MOUNTED\nimg\s+\(base\)\s+\d+\s+10.74 GB\s*$/,
    );
    // close: the pool and its devices go; the records stay, and the next call brings the set back.
    const poolName = j.poolName;
    expect(await cli('set', 'close', '--root', root)).toMatchObject({ code: 0 });
    expect((await dm.list()).map((d) => d.name).filter((n) => n.startsWith(poolName.replace(/-pool$/, '')))).toEqual([]);
    expect((await json<Array<{ id: string }>>('set', 'ls', '--root', root)).map((d) => d.id)).toEqual(['img']);
  });

  it('repl: the library in scope, top-level await, pools printed for people', async () => {
    const dir = `${SCRATCH}/repl-pool`;
    const input = [
      'const v = await dm.version(); console.log("VERSION", v.major)',
      `const p = await ThinPool.createLoopBacked({ dir: '${dir}', name: '${RUN}replpool', dataSize: '1G', metadataSize: '8M' })`,
      'p',
      'await p.destroy()',
      '.exit',
      '',
    ].join('\n');
    // Type each line at the prompt, as a person would (a piped REPL reads ahead otherwise).
    const lines = input.split('\n');
    const out = await new Promise<string>((resolve) => {
      const child = execFile(process.execPath, [bin, 'repl'], (_err, stdout) => resolve(stdout));
      let seen = 0;
      let buffer = '';
      child.stdout!.on('data', (d: Buffer) => {
        buffer += d.toString();
        const prompts = buffer.split('devmapper> ').length - 1;
        while (seen < prompts && lines.length > 0) {
          seen++;
          child.stdin!.write(`${lines.shift()!}\n`);
        }
      });
    });
    expect(out).toContain('VERSION 4');
    expect(out).toMatch(new RegExp(`ThinPool '${RUN}replpool' \\{[\\s\\S]*blockSize: '65.54 kB'[\\s\\S]*dataSize: '1.074 GB'`));
  });

  it('shows progress of long steps on a terminal, and nothing when piped', async () => {
    // script(1) gives the command a pseudo-terminal.
    const tty = await new Promise<string>((resolve) =>
      execFile('script', ['-qec', `${process.execPath} ${bin} set init --root ${SCRATCH}/progress-tty`, '/dev/null'], (_e, stdout) =>
        resolve(stdout),
      ),
    );
    expect(tty).toMatch(/✓ making ext4 on the 10.74 GB base device \([\d.]+s\)/);
    const piped = await cli('set', 'init', '--root', `${SCRATCH}/progress-pipe`);
    expect(piped.code).toBe(0);
    expect(piped.stdout + piped.stderr).not.toContain('making ext4');
  });

  it('remove --deferred --wait shows the wait on a terminal and returns once the device is gone', async () => {
    const name = `${RUN}cliwait`;
    const dev = (await cli('create', name, '--table', '0 1024 zero')).stdout.trim();
    expect((await cli('remove', name, '--wait')).code).toBe(2);
    // A holder keeps the device open until it is killed.
    const hold = async () => {
      const holder = spawn('sh', ['-c', `exec 3<${dev}; exec sleep 60`]);
      while ((await dm.info(name)).openCount === 0) await new Promise((r) => setTimeout(r, 20));
      return holder;
    };
    const holder = await hold();
    // Let go once the CLI has made the removal deferred (however slowly it starts).
    const release = (async () => {
      while (!(await dm.info(name).catch(() => ({ deferredRemove: true }))).deferredRemove) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 300));
      holder.kill();
    })();
    const tty = await new Promise<string>((resolve) =>
      execFile('script', ['-qec', `${process.execPath} ${bin} remove ${name} --deferred --wait --timeout 10`, '/dev/null'], (_e, stdout) =>
        resolve(stdout),
      ),
    );
    await release;
    expect(tty).toMatch(new RegExp(`✓ waiting for '${name}' to be closed by its last user \\(\\d\\.\\ds\\)`));
    expect(await dm.info(name).catch((e: { code: string }) => e.code)).toBe('ENXIO');
    await cli('create', name, '--table', '0 1024 zero');
    const holder2 = await hold();
    const piped = await cli('remove', name, '--deferred', '--wait', '--timeout', '1');
    expect(piped.code).toBe(1);
    expect(piped.stdout + piped.stderr).not.toContain('✓');
    expect(piped.stderr).toContain('still open');
    holder2.kill();
    expect(await gone(name)).toBe(true);
  });

  it('--debug traces ioctls with their durations', async () => {
    const r = await cli('--debug', 'ls');
    expect(r.stderr).toMatch(/DEVMAPPER \d+: DM_LIST_DEVICES\s+ok [\d.]+ms/);
  });
});
