// losetup-like verbs; losetup's own spellings are accepted too
// (`loop -f --show FILE`, `loop -d DEV`, --sizelimit, --sector-size).
import type { Command } from 'commander';
import * as loop from '../loop';
import { invalidArg } from '../errors';
import { humanSize } from '../format';
import { parseSize } from '../size';
import { loopAttachJson, loopJson } from './json';
import { alias, columns, emit, keyValues, withJson, type OutputOptions } from './output';

const ref = (dev: string): loop.LoopRef => (/^\d+$/.test(dev) ? Number(dev) : dev);

const VERBS = new Set(['attach', 'detach', 'ls', 'info', 'help']);

/**
 * losetup's command line onto the loop verbs: `loop -d DEV...` is `loop
 * detach DEV...`, `loop -a` / `-l` is `loop ls`, and `loop -f [--show]
 * [options] [FILE]` is `loop attach` (which takes -f and --show). Other
 * arguments are left as they are.
 */
export function losetupSpelling(argv: string[]): string[] {
  const at = argv.findIndex((a) => !a.startsWith('-'));
  if (at < 0 || argv[at] !== 'loop') return argv;
  const rest = argv.slice(at + 1);
  const first = rest.find((a) => !a.startsWith('-'));
  if (rest.length === 0 || (first !== undefined && VERBS.has(first) && rest.indexOf(first) === 0)) return argv;
  const head = argv.slice(0, at + 1);
  const has = (...flags: string[]) => rest.some((a) => flags.includes(a));
  const without = (...flags: string[]) => rest.filter((a) => !flags.includes(a));
  if (has('-d', '--detach')) return [...head, 'detach', ...without('-d', '--detach')];
  if (has('-a', '--all', '-l', '--list')) return [...head, 'ls', ...without('-a', '--all', '-l', '--list')];
  if (has('-f', '--find') || rest.some((a) => /^-[a-zA-Z]*f[a-zA-Z]*$/.test(a))) return [...head, 'attach', ...rest];
  return argv;
}

export function addLoopCommands(program: Command, out: () => OutputOptions): void {
  const l = program
    .command('loop')
    .description('loop devices, like losetup (whose -f, --show, -d, -a spellings work too)')
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper loop attach disk.img --read-only\n  devmapper loop -f --show disk.img\n  devmapper loop -d /dev/loop3',
    );

  const attach = withJson(l.command('attach [file]'))
    .description('attach FILE to the first free loop device and print its path; with -f and no FILE, print the first free device')
    .option('-r, --read-only', 'read-only device')
    .option('--direct-io', 'bypass the page cache where the file system allows')
    .option('-o, --offset <size>', 'skip this much of the file')
    .option('--size-limit <size>', 'expose only this much of the file')
    .option('--block-size <bytes>', 'logical block size: 512, 1024, 2048 or 4096')
    .option('-P, --partscan', 'scan for partitions')
    .option('-f, --find', "losetup's: take the first free device (attach always does); alone, print it")
    .option('--show', "losetup's: print the device (attach always does)");
  alias(attach, '--readonly', '--read-only', 'dmsetup');
  alias(attach, '--sizelimit <size>', '--size-limit', 'losetup');
  alias(attach, '-b, --sector-size <bytes>', '--block-size', 'losetup');
  attach
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper loop attach /var/lib/pool/data --direct-io\n  devmapper loop -f --show --sizelimit 64M --sector-size 4096 disk.img\n  devmapper loop -f',
    )
    .action(
      async (
        file: string | undefined,
        o: {
          readOnly?: boolean;
          directIo?: boolean;
          offset?: string;
          sizeLimit?: string;
          blockSize?: string;
          partscan?: boolean;
          find?: boolean;
        },
      ) => {
        if (file === undefined) {
          if (!o.find) throw invalidArg('file', 'give the file to attach (or -f alone for the first free device)');
          const free = await loop.findFree();
          return emit(out(), loopAttachJson({ ...free, directIo: null }), () => free.path);
        }
        const dev = await loop.attach(file, {
          readOnly: o.readOnly ?? false,
          directIo: o.directIo ?? false,
          partscan: o.partscan ?? false,
          ...(o.offset !== undefined ? { offset: parseSize(o.offset, '--offset') } : {}),
          ...(o.sizeLimit !== undefined ? { sizeLimit: parseSize(o.sizeLimit, '--size-limit') } : {}),
          ...(o.blockSize !== undefined ? { blockSize: parseSize(o.blockSize, '--block-size') } : {}),
        });
        emit(out(), loopAttachJson(dev), () => dev.path);
      },
    );

  l.command('detach <device...>')
    .description('detach loop devices (/dev/loopN or N); a busy one detaches on last close')
    .addHelpText('after', '\nExamples:\n  devmapper loop detach /dev/loop3\n  devmapper loop -d /dev/loop3 /dev/loop4')
    .action(async (devices: string[]) => {
      for (const d of devices) await loop.detach(ref(d));
    });

  withJson(l.command('ls'))
    .description('list attached loop devices (losetup -a, -l)')
    .addHelpText('after', '\nExample:\n  devmapper loop ls --json')
    .action(async () => {
      const all = await loop.list();
      emit(out(), all.map(loopJson), () =>
        columns(
          ['NAME', 'SIZELIMIT', 'OFFSET', 'RO', 'DIO', 'LOG-SEC', 'BACK-FILE'],
          all.map((d) => [d.path, d.sizeLimit, d.offset, d.readOnly ? 1 : 0, d.directIo ? 1 : 0, d.blockSize, d.backingFile]),
        ),
      );
    });

  withJson(l.command('info <device>'))
    .description('one loop device')
    .addHelpText('after', '\nExample:\n  devmapper loop info 0')
    .action(async (device: string) => {
      const i = await loop.info(ref(device));
      emit(out(), loopJson(i), () =>
        keyValues([
          ['Device', i.path],
          ['Backing file', i.backingFile],
          ['Size', humanSize(i.size)],
          ['Offset', i.offset],
          ['Size limit', i.sizeLimit],
          ['Read only', i.readOnly],
          ['Autoclear', i.autoclear],
          ['Partscan', i.partscan],
          ['Direct I/O', i.directIo],
          ['Block size', i.blockSize],
        ]),
      );
    });
}
