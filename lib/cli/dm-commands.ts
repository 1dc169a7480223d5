// dmsetup-like verbs over the raw API.
import type { Command } from 'commander';
import * as dm from '../dm';
import { invalidArg } from '../errors';
import { LIBRARY_VERSION } from '../version';
import { grammars } from '../targets/index';
import { blockName, sysfsText } from '../sysfs';
import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { depsJson, infoJson, listJson, statusJson, tableJson, versionJson } from './json';
import { alias, columns, emit, keyValues, withJson, type OutputOptions } from './output';
import { formatTableText, parseTableText } from './table-line';
import { terminalProgress } from './progress-line';
import { step } from '../progress';
import { parseSize } from '../size';
import { checkName } from '../validate';

export function addDmCommands(program: Command, out: () => OutputOptions): void {
  withJson(program.command('version'))
    .description('library, kernel driver and target versions')
    .addHelpText('after', '\nExample:\n  devmapper version --json')
    .action(async () => {
      const [driver, targets] = await Promise.all([dm.version(), dm.targets()]);
      const value = versionJson(LIBRARY_VERSION, driver, targets);
      emit(out(), value, () =>
        [
          `Library version: ${value.library}`,
          `Driver version:  ${value.driver}`,
          'Targets:',
          columns(
            ['NAME', 'VERSION'],
            value.targets.map((t) => [t.name, t.version]),
          ),
        ].join('\n'),
      );
    });

  withJson(program.command('ls'))
    .description('list device-mapper devices')
    .addHelpText('after', '\nExample:\n  devmapper ls --json')
    .action(async () => {
      const list = await dm.list();
      emit(out(), listJson(list), () =>
        list.length === 0
          ? 'No devices found'
          : columns(
              ['NAME', 'MAJ:MIN', 'EVENT', 'UUID'],
              list.map((d) => [d.name, `${d.major}:${d.minor}`, d.eventNr, d.uuid ?? '']),
            ),
      );
    });

  withJson(program.command('info <name>'))
    .description('state of one device')
    .addHelpText('after', '\nExample:\n  devmapper info docker-8:1-1234-pool')
    .action(async (name: string) => {
      const i = await dm.info(name);
      emit(out(), infoJson(i), () =>
        keyValues([
          ['Name', i.name],
          ['State', i.suspended ? 'SUSPENDED' : 'ACTIVE'],
          ['Tables present', [i.activeTable && 'LIVE', i.inactiveTable && 'INACTIVE'].filter(Boolean).join(' & ') || 'None'],
          ['Read only', i.readOnly],
          ['Open count', i.openCount],
          ['Event number', i.eventNr],
          ['Major, minor', `${i.major}, ${i.minor}`],
          ['Number of targets', i.targetCount],
          ['UUID', i.uuid || undefined],
          ['Deferred remove', i.deferredRemove || undefined],
        ]),
      );
    });

  withJson(program.command('table <name>'))
    .description('the loaded table, one target per line')
    .option('--inactive', 'the inactive (loaded, not resumed) table')
    .addHelpText('after', '\nExample:\n  devmapper table mydev --inactive')
    .action(async (name: string, o: { inactive?: boolean }) => {
      const t = await dm.table(name, { inactive: o.inactive ?? false });
      emit(out(), tableJson(t), () => formatTableText(t));
    });

  withJson(program.command('status <name>'))
    .description("each target's status, parsed where the target type is known")
    .option('--raw', "print the kernel's status lines as they are")
    .addHelpText('after', '\nExample:\n  devmapper status docker-8:1-1234-pool')
    .action(async (name: string, o: { raw?: boolean }) => {
      const lines = await dm.status(name);
      const parsed = lines.map((t) => ({ ...t, parsed: grammars[t.type]?.parseStatus(t.params) }));
      if (o.raw && !out().json) return console.log(formatTableText(lines));
      emit(out(), statusJson(parsed), () =>
        parsed
          .map((t) => {
            const head = `${t.start} ${t.length} ${t.type}`;
            if (!t.parsed || Object.keys(t.parsed).length === 0) return `${head} ${t.params}`.trimEnd();
            return `${head}\n${keyValues(Object.entries(t.parsed as Record<string, unknown>).map(([k, v]) => [k, v === null ? '-' : String(v)]))}`;
          })
          .join('\n'),
      );
    });

  const create = withJson(program.command('create <name> [file]'))
    .description('create a device; with a table (--table or a table FILE) also load and resume it')
    .option('--table <lines>', 'table lines "<start> <length> <type> <params>", separated by newlines or ";"')
    .option('-u, --uuid <uuid>', 'device uuid')
    .option('-r, --read-only', 'load the table read-only');
  alias(create, '--readonly', '--read-only', 'dmsetup')
    .addHelpText('after', '\nExamples:\n  devmapper create zeros --table "0 2048 zero"\n  devmapper create mydev mydev.table --readonly')
    .action(async (name: string, file: string | undefined, o: { table?: string; uuid?: string; readOnly?: boolean }) => {
      checkName(name); // before reading a table from stdin
      const table = file === undefined && o.table === undefined ? undefined : await tableFrom(o.table, file);
      const info = await dm.create(name, {
        ...(table !== undefined ? { table } : {}),
        ...(o.uuid !== undefined ? { uuid: o.uuid } : {}),
        readOnly: o.readOnly ?? false,
      });
      emit(out(), infoJson(info), () => info.path);
    });

  const reload = program
    .command('reload <name> [file]')
    .description('load a table into the inactive slot (resume makes it live), from --table, a table FILE, or stdin')
    .option('--table <lines>', 'table lines "<start> <length> <type> <params>", separated by newlines or ";"')
    .option('-r, --read-only', 'load the table read-only');
  alias(reload, '--readonly', '--read-only', 'dmsetup')
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper reload mydev --table "0 4096 zero" && devmapper resume mydev\n  devmapper table olddev | devmapper reload mydev',
    )
    .action(async (name: string, file: string | undefined, o: { table?: string; readOnly?: boolean }) => {
      checkName(name); // before reading a table from stdin
      await dm.load(name, await tableFrom(o.table, file ?? '-'), { readOnly: o.readOnly ?? false });
    });

  program
    .command('rename <name> <new>')
    .description('rename a device (its /dev/mapper node with it); with --setuuid, NEW is the uuid to give a device that has none')
    .option('--setuuid', 'set the uuid instead of the name (the kernel sets it only once)')
    .addHelpText('after', '\nExamples:\n  devmapper rename mydev newname\n  devmapper rename mydev --setuuid LVM-1234')
    .action(async (name: string, next: string, o: { setuuid?: boolean }) => {
      await (o.setuuid ? dm.setUuid(name, next) : dm.rename(name, next));
    });

  withJson(program.command('deps <name>'))
    .description("the devices a device's live table uses, as major:minor (or names with -o devname)")
    .addOption(
      new Option('-o, --options <how>', 'devno: (major, minor); devname: device-mapper name, else kernel name; blkdevname: kernel name')
        .choices(['devno', 'devname', 'blkdevname'])
        .default('devno'),
    )
    .addHelpText('after', '\nExamples:\n  devmapper deps mydev\n  devmapper deps docker-8:1-1234-pool -o devname --json')
    .action(async (name: string, o: { options: 'devno' | 'devname' | 'blkdevname' }) => {
      const deps = depsJson(
        await Promise.all(
          (await dm.deps(name)).map(async (d) => {
            const blockDevice = await blockName(d);
            const dmName = blockDevice === undefined ? undefined : await sysfsText(blockDevice, 'dm/name');
            return { ...d, blockDevice, name: dmName ?? blockDevice };
          }),
        ),
      );
      const show = (d: (typeof deps)[number]) =>
        o.options === 'devno' ? `${d.major}, ${d.minor}` : ((o.options === 'devname' ? d.name : d.blockDevice) ?? `${d.major}:${d.minor}`);
      emit(out(), deps, () => `${deps.length} dependencies\t: ${deps.map((d) => `(${show(d)})`).join(' ')}`);
    });

  withJson(program.command('mknodes [name]'))
    .description('make the /dev/mapper node of NAME (or of every device) right; without NAME and udev, drop nodes of devices that are gone')
    .addHelpText('after', '\nExamples:\n  devmapper mknodes\n  devmapper mknodes mydev')
    .action(async (name?: string) => {
      const nodes = await dm.mknodes(name);
      emit(out(), nodes, () => '');
    });

  withJson(program.command('remove <name>'))
    .description('remove a device')
    .option('--deferred', 'if it is open, remove it on last close')
    .option('--retry', 'retry while it is busy (about 5 s)')
    .option('-f, --force', "first replace its table with an error target, so its users' I/O fails and they let go (implies --retry)")
    .option('--wait', 'with --deferred: wait until the last user has closed it and it is gone')
    .option('--timeout <seconds>', 'with --wait: give up after this long (exit 1)')
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper remove mydev --deferred\n  devmapper remove mydev --deferred --wait --timeout 60\n  devmapper remove wedged --force --deferred',
    )
    .action(async (name: string, o: { deferred?: boolean; retry?: boolean; force?: boolean; wait?: boolean; timeout?: string }) => {
      if (o.wait && !o.deferred) throw invalidArg('--wait', 'goes with --deferred (a plain remove is done when it returns)');
      if (o.timeout !== undefined && !o.wait) throw invalidArg('--timeout', 'goes with --wait');
      const timeoutMs = o.timeout === undefined ? undefined : toInt(o.timeout, '--timeout') * 1000;
      const r = await dm.remove(name, { deferred: o.deferred ?? false, force: o.force ?? false, ...(o.retry ? { retry: true } : {}) });
      if (r.deferred && o.wait) {
        await step(terminalProgress(), `waiting for '${name}' to be closed by its last user`, () =>
          dm.waitRemoved(name, timeoutMs === undefined ? {} : { timeoutMs }),
        );
        emit(out(), { deferred: true, removed: true }, () => '');
        return;
      }
      emit(out(), { deferred: r.deferred, removed: !r.deferred }, () => (r.deferred ? `${name}: removal deferred until last close` : ''));
    });

  withJson(program.command('discard <name>'))
    .description('discard a byte range of a device (BLKDISCARD): a thin device gives its blocks back to the pool')
    .option('--offset <size>', 'start of the range (default 0; a multiple of 512)')
    .option('--length <size>', 'bytes to discard (default: to the end)')
    .addHelpText('after', '\nExamples:\n  devmapper discard thin1\n  devmapper discard thin1 --offset 1M --length 64M')
    .action(async (name: string, o: { offset?: string; length?: string }) => {
      const r = await dm.discard(name, {
        ...(o.offset !== undefined ? { offset: parseSize(o.offset, '--offset') } : {}),
        ...(o.length !== undefined ? { length: parseSize(o.length, '--length') } : {}),
      });
      emit(out(), r, () => `${name}: discarded ${r.length} bytes from ${r.offset}`);
    });

  program
    .command('suspend <name>')
    .description('suspend I/O')
    .option('--noflush', 'do not flush queued I/O')
    .option('--nolockfs', 'do not freeze a mounted filesystem')
    .addHelpText('after', '\nExample:\n  devmapper suspend mydev --nolockfs')
    .action(async (name: string, o: { noflush?: boolean; nolockfs?: boolean }) => {
      await dm.suspend(name, { noFlush: o.noflush ?? false, skipLockfs: o.nolockfs ?? false });
    });

  program
    .command('resume <name>')
    .description('resume I/O; a loaded inactive table becomes live')
    .addHelpText('after', '\nExample:\n  devmapper resume mydev')
    .action(async (name: string) => {
      await dm.resume(name);
    });

  withJson(program.command('message <name> <sector> <text...>'))
    .description("send a message to the target at sector; prints the target's reply")
    .addHelpText('after', '\nExample:\n  devmapper message docker-8:1-1234-pool 0 create_thin 7')
    .action(async (name: string, sector: string, text: string[]) => {
      const reply = await dm.message(name, text.join(' '), { sector: toInt(sector, 'sector') });
      emit(out(), { reply }, () => reply);
    });

  withJson(program.command('wait <name> [event]'))
    .description('wait until the event number differs from EVENT (default: the current one); prints the new one')
    .addHelpText('after', '\nExample:\n  devmapper wait docker-8:1-1234-pool')
    .action(async (name: string, event?: string) => {
      const from = event === undefined ? (await dm.info(name)).eventNr : toInt(event, 'event');
      const next = await dm.wait(name, from);
      emit(out(), { eventNr: next }, () => String(next));
    });
}

export function toInt(text: string, field: string): number {
  if (!/^\d+$/.test(text)) throw invalidArg(field, `'${text}' is not a whole number`);
  return Number(text);
}

/** A table from --table, or from FILE ("-": stdin) as dmsetup reads one. */
async function tableFrom(lines: string | undefined, file: string | undefined) {
  if (lines !== undefined && file !== undefined) throw invalidArg('--table', `give the table once: --table or ${file}, not both`);
  if (lines !== undefined) return parseTableText(lines);
  const from = file === '-' ? 'stdin' : file!;
  const text = await (file === '-' ? readStdin() : readFile(from, 'utf8')).catch((e: NodeJS.ErrnoException) => {
    throw invalidArg(from, `cannot read the table: ${e.code ?? e.message}`);
  });
  return parseTableText(text, { file: from });
}

/** All of stdin (a pipe, a file or a socket: opening /dev/stdin fails on a socket). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
