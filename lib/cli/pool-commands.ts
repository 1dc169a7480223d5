// Thin pools and thin devices.
import type { Command } from 'commander';
import { invalidArg } from '../errors';
import * as dm from '../dm';
import { humanSize } from '../format';
import { ThinPool, type PoolStatus } from '../pool/index';
import { toInt } from './dm-commands';
import { infoJson, poolStatusJson } from './json';
import { alias, emit, keyValues, withJson, type OutputOptions } from './output';
import { terminalProgress } from './progress-line';

/** The pool block of `devmapper pool status`, also the demo's report. */
export function poolReport(pool: ThinPool, s: PoolStatus, usage: Awaited<ReturnType<ThinPool['usage']>>): string {
  return keyValues([
    ['Pool Name', pool.name],
    ['Pool Blocksize', humanSize(pool.blockSize)],
    ['Data file', pool.loopBacking?.dataFile],
    ['Metadata file', pool.loopBacking?.metadataFile],
    ['Mode', s.mode],
    ['Transaction Id', s.transactionId],
    ['Data Space Used', humanSize(usage.data.used)],
    ['Data Space Total', humanSize(usage.data.total)],
    ['Data Space Available', humanSize(usage.data.available)],
    ['Metadata Space Used', humanSize(usage.metadata.used)],
    ['Metadata Space Total', humanSize(usage.metadata.total)],
    ['Metadata Space Available', humanSize(usage.metadata.available)],
    ['Held Metadata Root', s.heldMetadataRoot ?? '-'],
    ['Needs Check', s.needsCheck],
    ['Alerts', s.alerts.join(', ') || 'none'],
  ]);
}

export function addPoolCommands(program: Command, out: () => OutputOptions): void {
  const p = program.command('pool').description('thin pools');

  withJson(p.command('create'))
    .description('create a loop-backed pool (--dir) or one on block devices (--data-dev, --metadata-dev, --name)')
    .option('--dir <dir>', 'directory for the sparse data and metadata files')
    .option('--name <name>', 'pool name (loop-backed default: devmapper-MAJ:MIN-INO-pool)')
    .option('--data-size <size>', 'sparse data file size', '100G')
    .option('--metadata-size <size>', 'sparse metadata file size', '2G')
    .option('--block-size <size>', 'data block size (64K..1G)', '64K')
    .option('--data-dev <device>', 'data block device')
    .option('--metadata-dev <device>', 'metadata block device')
    .option('--error-if-no-space', 'fail writes at once when the pool is full')
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper pool create --dir /var/lib/pool --data-size 100G\n  devmapper pool create --name pool0 --data-dev /dev/vg/data --metadata-dev /dev/vg/meta',
    )
    .action(
      async (o: {
        dir?: string;
        name?: string;
        dataSize: string;
        metadataSize: string;
        blockSize: string;
        dataDev?: string;
        metadataDev?: string;
        errorIfNoSpace?: boolean;
      }) => {
        const pool =
          o.dataDev !== undefined || o.metadataDev !== undefined
            ? await ThinPool.create({
                name: o.name ?? '',
                dataDevice: o.dataDev ?? '',
                metadataDevice: o.metadataDev ?? '',
                blockSize: o.blockSize,
                errorIfNoSpace: o.errorIfNoSpace ?? false,
              })
            : await ThinPool.createLoopBacked({
                dir: o.dir ?? '',
                ...(o.name ? { name: o.name } : {}),
                dataSize: o.dataSize,
                metadataSize: o.metadataSize,
                blockSize: o.blockSize,
                errorIfNoSpace: o.errorIfNoSpace ?? false,
              });
        emit(
          out(),
          {
            name: pool.name,
            path: pool.path,
            blockSize: pool.blockSize,
            dataSize: pool.dataSize,
            dataFile: pool.loopBacking?.dataFile ?? null,
            metadataFile: pool.loopBacking?.metadataFile ?? null,
          },
          () => pool.name,
        );
      },
    );

  withJson(p.command('status <name>'))
    .description('status and space of a pool')
    .addHelpText('after', '\nExample:\n  devmapper pool status docker-8:1-1234-pool --json')
    .action(async (name: string) => {
      const pool = await ThinPool.open(name);
      const [s, usage] = await Promise.all([pool.status(), pool.usage()]);
      emit(out(), poolStatusJson(pool, s, usage), () => poolReport(pool, s, usage));
    });

  withJson(p.command('watch <name>'))
    .description("print the pool's events as they happen (until ^C); optionally grow a loop-backed pool before it fills")
    .option('--auto-extend <threshold:percent>', 'grow by PERCENT when THRESHOLD percent of the space is used, e.g. 80:20')
    .option('--max <size>', 'never grow the data file beyond this size')
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper pool watch docker-8:1-1234-pool\n  devmapper pool watch docker-8:1-1234-pool --auto-extend 80:20 --max 500G --json',
    )
    .action(async (name: string, o: { autoExtend?: string; max?: string }) => {
      const pool = await ThinPool.open(name);
      let autoExtend;
      if (o.autoExtend !== undefined) {
        const m = /^(\d+):(\d+)$/.exec(o.autoExtend);
        if (!m) throw invalidArg('--auto-extend', `takes THRESHOLD:PERCENT, e.g. 80:20 (got '${o.autoExtend}')`);
        autoExtend = { threshold: Number(m[1]), percent: Number(m[2]), ...(o.max !== undefined ? { max: o.max } : {}) };
      } else if (o.max !== undefined) throw invalidArg('--max', 'goes with --auto-extend');
      const w = pool.watch(autoExtend ? { autoExtend } : {});
      const stop = () => void w.close();
      process.once('SIGINT', stop).once('SIGTERM', stop);
      const time = () => new Date().toISOString();
      let failure: unknown;
      w.on('error', (e) => (failure = e));
      for await (const e of w) {
        if (out().json) console.log(JSON.stringify({ time: time(), ...e }));
        else if (e.type === 'extended') console.log(`${time()} extended ${e.what} ${humanSize(e.from)} -> ${humanSize(e.to)} (${e.ms} ms)`);
        else {
          const st = e.status;
          const data = `data ${st.usedDataBlocks}/${st.totalDataBlocks}`;
          const meta = `metadata ${st.usedMetadataBlocks}/${st.totalMetadataBlocks}`;
          console.log(`${time()} ${e.type} mode=${st.mode} ${data} ${meta} alerts=${st.alerts.join(',') || 'none'}`);
        }
      }
      process.off('SIGINT', stop).off('SIGTERM', stop);
      if (failure) throw failure;
    });

  withJson(p.command('resize <name>'))
    .description('grow a pool: loop-backed with the new sizes, direct to its grown devices')
    .option('--data-size <size>', 'new data size (loop-backed)')
    .option('--metadata-size <size>', 'new metadata size (loop-backed)')
    .addHelpText(
      'after',
      '\nExample (the seed document\'s "device_tool resize 200GB"):\n  devmapper pool resize docker-8:1-1234-pool --data-size 200G',
    )
    .action(async (name: string, o: { dataSize?: string; metadataSize?: string }) => {
      const pool = await ThinPool.open(name);
      const onProgress = terminalProgress();
      await pool.resize({
        ...(o.dataSize ? { dataSize: o.dataSize } : {}),
        ...(o.metadataSize ? { metadataSize: o.metadataSize } : {}),
        ...(onProgress ? { onProgress } : {}),
      });
      const usage = await pool.usage();
      emit(out(), usage, () => `${name}: data ${humanSize(usage.data.total)}, metadata ${humanSize(usage.metadata.total)}`);
    });

  p.command('destroy <name>')
    .description('remove a pool and its active thin devices (loop files are kept)')
    .addHelpText('after', '\nExample:\n  devmapper pool destroy docker-8:1-1234-pool')
    .action(async (name: string) => {
      await (await ThinPool.open(name)).destroy();
    });

  const t = program.command('thin').description('thin devices in a pool');
  withJson(t.command('create <pool> [id]'))
    .description('create a thin device (the next free id when none is given); prints the id')
    .addHelpText('after', '\nExample:\n  devmapper thin create docker-8:1-1234-pool 7')
    .action(async (pool: string, id?: string) => {
      const n = await (await ThinPool.open(pool)).createThin(id === undefined ? undefined : toInt(id, 'id'));
      emit(out(), { thinId: n }, () => String(n));
    });
  withJson(t.command('snapshot <pool> <id> <origin>'))
    .description('snapshot thin device ORIGIN as ID ("-" for the next free id); prints the id')
    .addHelpText('after', '\nExample:\n  devmapper thin snapshot docker-8:1-1234-pool 8 7')
    .action(async (pool: string, id: string, origin: string) => {
      const n = await (await ThinPool.open(pool)).createSnapshot(id === '-' ? undefined : toInt(id, 'id'), toInt(origin, 'origin'));
      emit(out(), { thinId: n }, () => String(n));
    });
  const activate = withJson(t.command('activate <pool> <id>'))
    .description('map thin device ID as /dev/mapper/NAME')
    .requiredOption('--name <name>', 'device name')
    .requiredOption('--size <size>', 'device size, e.g. 10G')
    .option('-r, --read-only', 'read-only');
  alias(activate, '--readonly', '--read-only', 'dmsetup')
    .addHelpText('after', '\nExample:\n  devmapper thin activate docker-8:1-1234-pool 7 --name base --size 10G')
    .action(async (pool: string, id: string, o: { name: string; size: string; readOnly?: boolean }) => {
      const dev = await (
        await ThinPool.open(pool)
      ).activate(toInt(id, 'id'), { name: o.name, size: o.size, readOnly: o.readOnly ?? false });
      emit(out(), infoJson(dev), () => dev.path);
    });
  withJson(t.command('deactivate <name>'))
    .description('remove the mapping of a thin device (its data stays in the pool)')
    .option('--deferred', 'if it is open, remove it on last close')
    .addHelpText('after', '\nExample:\n  devmapper thin deactivate base --deferred')
    .action(async (name: string, o: { deferred?: boolean }) => {
      const r = await dm.remove(name, { deferred: o.deferred ?? false });
      emit(out(), { deferred: r.deferred, removed: !r.deferred }, () => (r.deferred ? `${name}: removal deferred until last close` : ''));
    });
  withJson(t.command('usage <pool> <id>'))
    .description("mapped sectors of thin device ID (its device's status, or a short read-only activation)")
    .addHelpText('after', '\nExample:\n  devmapper thin usage docker-8:1-1234-pool 7 --json')
    .action(async (pool: string, id: string) => {
      const u = await (await ThinPool.open(pool)).thinUsage(toInt(id, 'id'));
      emit(out(), u, () => `${u.mappedSectors} sectors mapped (${u.mappedBytes} bytes), highest ${u.highestMappedSector ?? '-'}`);
    });
  t.command('delete <pool> <id>')
    .description('delete a thin device and free its blocks (it must not be active)')
    .addHelpText('after', '\nExample:\n  devmapper thin delete docker-8:1-1234-pool 7')
    .action(async (pool: string, id: string) => {
      await (await ThinPool.open(pool)).deleteThin(toInt(id, 'id'));
    });
}
