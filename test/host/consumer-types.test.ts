// The published types, as a TypeScript user compiles against them: a project
// whose node_modules/devmapper is this package (package.json + dist/),
// compiled strict with module node16 and nodenext (a .cts and a .mts file:
// CommonJS and ESM) and with bundler resolution. Good code compiles; each
// line of BAD fails with the error named on it and nothing else fails. The
// compiler runs in this process, all three settings one after the other.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');

// What a user writes: it must compile under every setting.
const GOOD = `
import { constants } from 'node:os';
import { dm, DmError, loop, PoolWatcher, Snapshotter, targets, ThinPool, type DmErrorCode, type ErrnoName, type PoolStatus } from 'devmapper';

export async function use(e: unknown, w: PoolWatcher): Promise<void> {
  if (e instanceof DmError) {
    if (e.code === 'EBUSY' || e.code === 'ERR_DM_POOL_FULL' || e.code === 'E15') console.log(e.errno, e.ioctl, e.device);
    const code: DmErrorCode = e.code;
    switch (code) {
      case 'ERR_DM_INVALID_ARG':
      case 'ENXIO':
        break;
    }
  }
  w.on('lowWater', (s: PoolStatus) => console.log(s.mode, s.usedDataBlocks));
  w.on('extended', (x) => console.log(x.what, x.to));
  for await (const event of w) if (event.type === 'extended') console.log(event.from);
  const pool = await ThinPool.open('pool');
  const device = await pool.createThinDevice({ name: 'thin', size: '1G' });
  console.log(device.thinId, (await dm.info(device.name)).path, await loop.list());
  await dm.load(device.name, [targets.target(targets.thin, 0, 2048, { poolDevice: pool.path, thinId: device.thinId })]);
  const s = await Snapshotter.open({ root: '/var/lib/x', poolName: 'pool' });
  await s.close();
}

// ErrnoName lists the errno names Node.js has on Linux, no more and no fewer.
type NodeErrno = Exclude<Extract<keyof typeof constants.errno, \`E\${string}\`>, 'EWOULDBLOCK' | 'ENOTSUP'>;
type Named = Exclude<ErrnoName, \`E\${number}\`>;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const sameErrnoNames: Same<NodeErrno, Named> = true;
`;

// Each line must fail to compile, with the error code at its end.
const BAD = `
import { dm, DmError, DeviceSet, Snapshotter, ThinPool, type DmErrorCode, type PoolWatcher } from 'devmapper';
import { finishCreate } from 'devmapper/dist/batch'; // TS2307
declare const e: DmError, pool: ThinPool, w: PoolWatcher, s: Snapshotter;
export const a = e.code === 'EBUSSY'; // TS2367
export const b: DmErrorCode = 'ERR_DM_INVALID_ARGUMENT'; // TS2820 (did you mean 'ERR_DM_INVALID_ARG')
export const c = new DmError('x', { code: 'ENOSUCH' }); // TS2322
e.code = 'EBUSY'; // TS2540
export const d = dm.createSteps; // TS2339
export const f = dm.undoCreate; // TS2339
export const g = dm.finishCreate; // TS2339
export const h = pool.deviceSteps; // TS2339
export const i = pool.allocate; // TS2339
export const j = DeviceSet.openDocker; // TS2339
export const k = s.store; // TS2339
export const l = new ThinPool(); // TS2673
w.on('lowWatr', () => undefined); // TS2345
export { finishCreate };
`;

/** [line, code] of each error BAD asks for. */
const expected = BAD.split('\n').flatMap((line, i) => {
  const m = /\/\/ TS(\d+)/.exec(line);
  return m ? [[i, Number(m[1])] as const] : [];
});

const SETTINGS: Array<{ name: string; options: ts.CompilerOptions; files: string[] }> = [
  { name: 'node16', options: { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 }, files: ['cts', 'mts'] },
  {
    name: 'nodenext',
    options: { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
    files: ['cts', 'mts'],
  },
  { name: 'bundler', options: { module: ts.ModuleKind.Preserve, moduleResolution: ts.ModuleResolutionKind.Bundler }, files: ['ts'] },
];

// The three programs share parsed files (@types/node and the package's .d.ts
// are most of the work); a file is parsed again only where its settings differ.
const parsed = new Map<string, ts.SourceFile | undefined>();
function cachingHost(options: ts.CompilerOptions): ts.CompilerHost {
  const host = ts.createCompilerHost(options);
  const read = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const key = `${fileName}\0${JSON.stringify(languageVersion)}`;
    if (!parsed.has(key)) parsed.set(key, read(fileName, languageVersion, ...rest));
    return parsed.get(key);
  };
  return host;
}

let work: string;
const results = new Map<string, { program: ts.Program; diagnostics: readonly ts.Diagnostic[] }>();

beforeAll(async () => {
  work = await mkdtemp(join('/var/tmp', 'devmapper-consumer-'));
  await mkdir(join(work, 'node_modules', '@types'), { recursive: true });
  await symlink(root, join(work, 'node_modules', 'devmapper'));
  await symlink(join(root, 'node_modules', '@types', 'node'), join(work, 'node_modules', '@types', 'node'));
  await writeFile(join(work, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  for (const ext of ['cts', 'mts', 'ts']) {
    await writeFile(join(work, `good.${ext}`), GOOD);
    await writeFile(join(work, `bad.${ext}`), BAD);
  }
  for (const s of SETTINGS) {
    const options: ts.CompilerOptions = {
      ...s.options,
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts'],
      types: ['node'],
      skipLibCheck: false, // the package's own .d.ts are checked too
    };
    const files = s.files.flatMap((ext) => [join(work, `good.${ext}`), join(work, `bad.${ext}`)]);
    const program = ts.createProgram({ rootNames: files, options, host: cachingHost(options) });
    results.set(s.name, { program, diagnostics: ts.getPreEmitDiagnostics(program) });
  }
}, 120_000);
afterAll(() => rm(work, { recursive: true, force: true }));

const where = (d: ts.Diagnostic) =>
  `${d.file ? `${d.file.fileName.slice(work.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start!).line}` : '-'} TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;

describe.each(SETTINGS.map((s) => s.name))('a strict consumer, module %s', (name) => {
  it('compiles the usual use of the package, with no error in its .d.ts', () => {
    const { diagnostics } = results.get(name)!;
    expect(diagnostics.filter((d) => !d.file?.fileName.includes('/bad.')).map(where)).toEqual([]);
  });

  it('refuses each must-not-compile line with its error, and only those', () => {
    const { diagnostics } = results.get(name)!;
    for (const ext of SETTINGS.find((s) => s.name === name)!.files) {
      const got = diagnostics
        .filter((d) => d.file?.fileName.endsWith(`/bad.${ext}`))
        .map((d) => [d.file!.getLineAndCharacterOfPosition(d.start!).line, d.code] as const);
      expect(got, `bad.${ext}: ${diagnostics.map(where).join('\n')}`).toEqual(expected);
    }
  });
});

// Nothing is on the exported objects that the types do not declare, and the
// types declare nothing that is not there (checked against require()).
it('the runtime exports are what the types declare: namespaces, classes and their statics', () => {
  const { program } = results.get('node16')!;
  const checker = program.getTypeChecker();
  const good = program.getSourceFile(join(work, 'good.cts'))!;
  const spec = good.statements.filter(ts.isImportDeclaration).find((s) => (s.moduleSpecifier as ts.StringLiteral).text === 'devmapper')!;
  const unalias = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const moduleSymbol = checker.getSymbolAtLocation(spec.moduleSpecifier)!;
  const values = (m: ts.Symbol) =>
    checker
      .getExportsOfModule(m)
      .filter((x) => unalias(x).flags & ts.SymbolFlags.Value)
      .map((x) => x.name)
      .sort();
  // Members the class itself declares (not inherited from Error or EventEmitter).
  const names = (t: ts.Type, flags: ts.SymbolFlags, cls: ts.Symbol) =>
    checker
      .getPropertiesOfType(t)
      .filter((p) => p.flags & flags && !p.name.startsWith('__@') && p.declarations?.some((d) => d.parent === cls.valueDeclaration)) // no symbol keys
      .map((p) => p.name)
      .sort();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const runtime = require(root) as Record<string, unknown>;
  expect(Object.keys(runtime).sort()).toEqual(values(moduleSymbol));
  let classes = 0;
  for (const x of checker.getExportsOfModule(moduleSymbol)) {
    const sym = unalias(x);
    const value = runtime[x.name];
    if (sym.flags & ts.SymbolFlags.ValueModule) {
      expect(Object.keys(value as object).sort(), x.name).toEqual(values(sym));
    } else if (sym.flags & ts.SymbolFlags.Class) {
      classes++;
      const ctor = value as { prototype: object };
      const methods = ts.SymbolFlags.Method | ts.SymbolFlags.GetAccessor;
      const proto = Object.getOwnPropertyNames(ctor.prototype).filter((n) => n !== 'constructor');
      expect(proto.sort(), `${x.name}.prototype`).toEqual(names(checker.getDeclaredTypeOfSymbol(sym), methods, sym));
      const statics = Object.getOwnPropertyNames(ctor).filter((n) => !['length', 'name', 'prototype'].includes(n));
      expect(statics.sort(), `${x.name} statics`).toEqual(names(checker.getTypeOfSymbol(sym), methods, sym));
    }
  }
  expect(classes).toBeGreaterThanOrEqual(5); // DmError, ThinPool, PoolWatcher, DeviceSet, Snapshotter
});
