// The containerd proxy plugin: a Snapshotter served as containerd's snapshots
// service until SIGTERM or SIGINT, which let calls in flight finish and close
// the snapshotter (devices stay, as containers use them).
import { Command, Option } from 'commander';
import { Snapshotter, type SnapshotterOptions } from '../snapshotter/index';
import { serveSnapshotter } from '../snapshotter/serve';

interface ServeFlags {
  socket: string;
  root: string;
  dataSize?: string;
  metadataSize?: string;
  blockSize?: string;
  dataDev?: string;
  metadataDev?: string;
  poolName?: string;
  baseSize?: string;
  fs?: 'ext4' | 'xfs';
  mkfsArg: string[];
  mountOption: string[];
  discard?: boolean;
}

const collect = (v: string, all: string[]) => [...all, v];

/** The Snapshotter options the flags give (unset flags: the library's defaults). */
export function snapshotterOptions(f: ServeFlags): SnapshotterOptions {
  const o: SnapshotterOptions = { root: f.root, mkfsArgs: f.mkfsArg, mountOptions: f.mountOption };
  if (f.dataSize !== undefined) o.dataSize = f.dataSize;
  if (f.metadataSize !== undefined) o.metadataSize = f.metadataSize;
  if (f.blockSize !== undefined) o.blockSize = f.blockSize;
  if (f.dataDev !== undefined) o.dataDevice = f.dataDev;
  if (f.metadataDev !== undefined) o.metadataDevice = f.metadataDev;
  if (f.poolName !== undefined) o.poolName = f.poolName;
  if (f.baseSize !== undefined) o.baseSize = f.baseSize;
  if (f.fs !== undefined) o.fs = f.fs;
  if (f.discard) o.discard = true;
  return o;
}

export function addSnapshotterCommands(program: Command): void {
  const s = program.command('snapshotter').description("containerd's snapshotter model on a thin pool");
  s.command('serve')
    .description("serve containerd's snapshots service (a proxy snapshotter plugin) on a unix socket until SIGTERM")
    .requiredOption('--socket <path>', 'unix socket to listen on (containerd: proxy_plugins.NAME.address)')
    .requiredOption('--root <dir>', "the snapshotter's directory (devicemapper/, metadata/, mnt/)")
    .option('--data-size <size>', 'sparse data file size of a new loop-backed pool (default 100G)')
    .option('--metadata-size <size>', 'sparse metadata file size of a new loop-backed pool (default 2G)')
    .option('--block-size <size>', 'pool data block size, 64K..1G (default 64K)')
    .option('--data-dev <device>', 'make the pool on this data block device (with --metadata-dev)')
    .option('--metadata-dev <device>', 'metadata block device (with --data-dev)')
    .option('--pool-name <name>', 'use this existing thin pool')
    .option('--base-size <size>', 'size of every snapshot device (default 10G)')
    .addOption(new Option('--fs <type>', 'filesystem of snapshots without a parent (default ext4)').choices(['ext4', 'xfs']))
    .option('--mkfs-arg <arg>', 'extra mkfs argument (repeat for more)', collect, [])
    .option('--mount-option <opt>', 'extra option in every mount (repeat for more)', collect, [])
    .option('--discard', "discard a snapshot's blocks before deleting it")
    .addHelpText(
      'after',
      [
        '',
        'Prints one line once it listens; each failed call logs one line to stderr.',
        '',
        'containerd (config.toml):',
        '  [proxy_plugins.devmapper-node]',
        '    type = "snapshot"',
        '    address = "/run/devmapper/snapshotter.sock"',
        '',
        'Example:',
        '  devmapper snapshotter serve --socket /run/devmapper/snapshotter.sock --root /var/lib/devmapper-snapshotter',
      ].join('\n'),
    )
    .action(async (f: ServeFlags) => {
      const sn = await Snapshotter.open(snapshotterOptions(f));
      let server;
      try {
        server = await serveSnapshotter(sn, { socket: f.socket });
      } catch (e) {
        await sn.close();
        throw e;
      }
      console.log(`devmapper snapshotter: serving containerd.services.snapshots.v1.Snapshots on ${server.socket} (pool ${sn.pool.name})`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGTERM', stop).off('SIGINT', stop);
          resolve();
        };
        process.on('SIGTERM', stop).on('SIGINT', stop);
      });
      await server.close();
      await sn.close();
      console.log('devmapper snapshotter: stopped');
    });
}
