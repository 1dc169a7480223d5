// The devmapper command: a thin shell over the library.
// Exit codes: 0 ok, 1 the operation failed, 2 usage error (bad arguments).
import { Command, CommanderError } from 'commander';
import * as repl from 'node:repl';
import { enableTrace } from '../control';
import { DmError } from '../errors';
import * as lib from '../index';
import { LIBRARY_VERSION } from '../version';
import { addDmCommands } from './dm-commands';
import { addLoopCommands, losetupSpelling } from './loop-commands';
import { addPoolCommands } from './pool-commands';
import { addSetCommands } from './set-commands';
import { addSnapshotterCommands } from './snapshotter-commands';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('devmapper')
    .description('Linux device-mapper, loop devices, thin pools, device sets and a containerd snapshotter, without dmsetup or losetup')
    .version(LIBRARY_VERSION, '-V, --version', 'print the library version')
    .option('--json', 'print results as JSON (sizes in bytes)')
    .option('--debug', 'trace every ioctl to stderr, and print stacks on failure')
    .showHelpAfterError()
    .exitOverride()
    .addHelpText(
      'after',
      '\nExamples:\n  devmapper ls\n  devmapper pool create --dir /var/lib/pool --data-size 100G\n  devmapper set init --root /var/lib/rt/dm\n  devmapper repl',
    )
    .hook('preAction', (_program, action) => {
      if (program.opts().debug) enableTrace();
      if (action.opts().json === true) program.setOptionValue('json', true); // a verb's own --json
    });
  const out = () => ({ json: program.opts().json === true });
  addDmCommands(program, out);
  addLoopCommands(program, out);
  addPoolCommands(program, out);
  addSetCommands(program, out);
  addSnapshotterCommands(program);
  program
    .command('repl')
    .description('a Node REPL with dm, loop, ThinPool, DeviceSet, targets and DmError in scope (top-level await works)')
    .addHelpText('after', '\nExample:\n  devmapper repl\n  > await dm.list()')
    .action(
      () =>
        new Promise<void>((resolve) => {
          const r = repl.start({ prompt: 'devmapper> ' });
          Object.assign(r.context, {
            dm: lib.dm,
            loop: lib.loop,
            ThinPool: lib.ThinPool,
            DeviceSet: lib.DeviceSet,
            DmError: lib.DmError,
            targets: lib.targets,
            humanSize: lib.humanSize,
          });
          r.on('exit', resolve);
        }),
    );
  for (const c of program.commands) c.exitOverride().showHelpAfterError();

  try {
    await program.parseAsync(losetupSpelling(argv), { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    const debug = argv.includes('--debug');
    if (e instanceof DmError) {
      console.error(`devmapper: ${e.message}`);
      if (debug && e.stack) console.error(e.stack);
      return e.code === 'ERR_DM_INVALID_ARG' ? 2 : 1;
    }
    console.error(`devmapper: ${debug && e instanceof Error ? e.stack : String(e instanceof Error ? e.message : e)}`);
    return 1;
  }
}
