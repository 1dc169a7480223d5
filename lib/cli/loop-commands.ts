// losetup-like verbs.
import type { Command } from 'commander';
import * as loop from '../loop';
import { humanSize } from '../format';
import { parseSize } from '../size';
import { columns, emit, keyValues, type OutputOptions } from './output';

const ref = (dev: string): loop.LoopRef => (/^\d+$/.test(dev) ? Number(dev) : dev);

export function addLoopCommands(program: Command, out: () => OutputOptions): void {
  const l = program.command('loop').description('loop devices, like losetup');

  l.command('attach <file>')
    .description('attach FILE to a free loop device and print its path')
    .option('--read-only', 'read-only device')
    .option('--direct-io', 'bypass the page cache where the file system allows')
    .option('--offset <size>', 'skip this much of the file')
    .option('--size-limit <size>', 'expose only this much of the file')
    .option('--block-size <bytes>', 'logical block size: 512, 1024, 2048 or 4096')
    .option('--partscan', 'scan for partitions')
    .addHelpText('after', '\nExample:\n  devmapper loop attach /var/lib/pool/data --direct-io')
    .action(
      async (
        file: string,
        o: { readOnly?: boolean; directIo?: boolean; offset?: string; sizeLimit?: string; blockSize?: string; partscan?: boolean },
      ) => {
        const dev = await loop.attach(file, {
          readOnly: o.readOnly ?? false,
          directIo: o.directIo ?? false,
          partscan: o.partscan ?? false,
          ...(o.offset !== undefined ? { offset: parseSize(o.offset, '--offset') } : {}),
          ...(o.sizeLimit !== undefined ? { sizeLimit: parseSize(o.sizeLimit, '--size-limit') } : {}),
          ...(o.blockSize !== undefined ? { blockSize: parseSize(o.blockSize, '--block-size') } : {}),
        });
        const { release: _release, ...value } = dev;
        emit(out(), value, () => dev.path);
      },
    );

  l.command('detach <device>')
    .description('detach a loop device (/dev/loopN or N); a busy one detaches on last close')
    .addHelpText('after', '\nExample:\n  devmapper loop detach /dev/loop3')
    .action(async (device: string) => {
      await loop.detach(ref(device));
    });

  l.command('ls')
    .description('list attached loop devices')
    .addHelpText('after', '\nExample:\n  devmapper loop ls --json')
    .action(async () => {
      const all = await loop.list();
      emit(out(), all, () =>
        columns(
          ['NAME', 'SIZELIMIT', 'OFFSET', 'RO', 'DIO', 'LOG-SEC', 'BACK-FILE'],
          all.map((d) => [d.path, d.sizeLimit, d.offset, d.readOnly ? 1 : 0, d.directIo ? 1 : 0, d.blockSize, d.backingFile]),
        ),
      );
    });

  l.command('info <device>')
    .description('one loop device')
    .addHelpText('after', '\nExample:\n  devmapper loop info 0')
    .action(async (device: string) => {
      const i = await loop.info(ref(device));
      emit(out(), i, () =>
        keyValues([
          ['Device', i.path],
          ['Backing file', i.backingFile],
          ['Size', humanSize(i.size)],
          ['Offset', i.offset],
          ['Size limit', i.sizeLimit],
          ['Read only', i.readOnly],
          ['Autoclear', i.autoclear],
          ['Direct I/O', i.directIo],
          ['Block size', i.blockSize],
        ]),
      );
    });
}
