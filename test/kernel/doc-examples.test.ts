// The examples in README.md and docs/, run as they are written against the
// real kernel, so that the page and the code cannot drift apart. Each fenced
// block is read from its file, run as one script in a child process
// (require('devmapper') as a user has it), and every result comment that
// states a value is compared with what the statement returned:
//   d.path;                  // '/dev/mapper/demo'            equal
//   const c = await f();     // { thinId: 0, name, path, ... } those fields equal / present
//   (await g()).map(...);    // [ 'linear', ... ]              those members present
// Comments marked "e.g." (values that vary by machine) and prose are not compared.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dm, loop } from '../../lib/index';
import { sweepSets } from './helpers';

const root = join(__dirname, '..', '..');
const exec = promisify(execFile);

/** The ```js block of `file` that contains `marker`. */
function block(file: string, marker: string): string {
  const blocks = [...readFileSync(join(root, file), 'utf8').matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  const found = blocks.filter((b) => b.includes(marker));
  expect(found, `${file}: one js block with ${marker}`).toHaveLength(1);
  return found[0]!;
}

interface Claim {
  line: number;
  code: string;
  comment: string;
}

/**
 * The block as a script that records, for each line with a result comment,
 * the statement's value (an expression) or the variable's (a declaration).
 */
function instrument(code: string): { script: string; claims: Claim[] } {
  const claims: Claim[] = [];
  const lines = code.split('\n').map((text, line) => {
    const m = /^(?<stmt>[^/].*?);\s+\/\/ (?<comment>.*)$/.exec(text);
    if (!m) return text;
    const { stmt, comment } = m.groups!;
    claims.push({ line, code: stmt!, comment: comment! });
    const decl = /^(?:const|let) (\w+) = /.exec(stmt!);
    if (decl) return `${stmt}; __seen[${line}] = ${decl[1]};`;
    const first = /^(?:const|let) \[(\w+)\] = /.exec(stmt!); // const [m] = ...: the comment shows m
    if (first) return `${stmt}; __seen[${line}] = ${first[1]};`;
    if (/^(?:const|let) /.test(stmt!)) return text; // another destructuring: nothing to record
    const logged = /^console\.log\((.*)\)$/.exec(stmt!); // the value printed is what the comment shows
    if (logged) return `__seen[${line}] = (${logged[1]}); console.log(__seen[${line}]);`;
    return `__seen[${line}] = (${stmt});`;
  });
  const script = [
    'const __seen = {};',
    '(async () => {',
    ...lines,
    '})().then(',
    "  () => console.log('\\n__SEEN__' + JSON.stringify(__seen)),",
    '  (e) => { console.error(e); process.exit(1); },',
    ');',
  ].join('\n');
  return { script, claims };
}

/** Compare what a result comment states with the value seen; true if it states something. */
function check(claim: Claim, seen: unknown): boolean {
  const where = `line ${claim.line + 1}: ${claim.code} // ${claim.comment}`;
  const c = claim.comment.trim();
  if (c.startsWith('e.g.') || !/^[[{']/.test(c)) return false;
  if (!c.startsWith('{') && !c.includes('...')) {
    // A whole value, written as a JavaScript literal.
    expect(seen, where).toEqual(new Function(`return (${c});`)());
    return true;
  }
  if (c.startsWith('[')) {
    // Some of the members.
    const listed = [...c.matchAll(/'([^']*)'/g)].map((m) => m[1]);
    expect(listed.length, where).toBeGreaterThan(0);
    expect(seen, where).toEqual(expect.arrayContaining(listed));
    return true;
  }
  // Some of the fields: `key: literal` equal; a bare `key`, or one whose value is elided (`{ ... }`), present.
  const object = seen as Record<string, unknown>;
  const fields = topLevel(c.slice(1, c.lastIndexOf('}'))).filter((f) => f !== '...');
  expect(fields.length, where).toBeGreaterThan(0);
  for (const field of fields) {
    const [, key, value] = /^(\w+)(?::\s*(.*))?$/.exec(field) ?? [];
    expect(key, `${where}: '${field}'`).toBeDefined();
    if (value === undefined || /^[[{]/.test(value)) expect(object, `${where}: ${key}`).toHaveProperty(key!);
    else expect(object[key!], `${where}: ${key}`).toEqual(literal(value));
  }
  return true;
}

/** A literal from a comment; in a string, '…' stands for any text. */
function literal(text: string): unknown {
  const value: unknown = new Function(`return (${text});`)();
  if (typeof value !== 'string' || !value.includes('…')) return value;
  const pattern = value.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return expect.stringMatching(new RegExp(`^${pattern.join('.*')}$`));
}

/** The comma-separated parts of `text` outside any brackets or quotes, trimmed. */
function topLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let part = '';
  for (const ch of text) {
    if (ch === "'") quoted = !quoted;
    else if (!quoted && '{['.includes(ch)) depth++;
    else if (!quoted && '}]'.includes(ch)) depth--;
    if (ch === ',' && depth === 0 && !quoted) {
      parts.push(part.trim());
      part = '';
    } else part += ch;
  }
  return [...parts, part.trim()].filter((p) => p !== '');
}

/** Run `code` as a user's script from the package root; the values it recorded by line. */
async function run(code: string): Promise<{ claims: Claim[]; seen: Record<number, unknown> }> {
  const { script, claims } = instrument(code);
  const { stdout } = await exec(process.execPath, ['-e', script], { cwd: root, maxBuffer: 16 << 20 }).catch(
    (e: Error & { stderr?: string }) => {
      throw new Error(`${e.message}\n${e.stderr ?? ''}\n--- the script:\n${script}`);
    },
  );
  const seen = JSON.parse(stdout.slice(stdout.lastIndexOf('__SEEN__') + '__SEEN__'.length)) as Record<number, unknown>;
  return { claims, seen };
}

/** Run the block and compare its result comments; the number of comments compared. */
async function runAndCheck(code: string): Promise<number> {
  const { claims, seen } = await run(code);
  return claims.filter((c) => check(c, seen[c.line])).length;
}

let dir: string;
const NAMES = ['demo', 'zeros', 'ctr', 'snap', 'base']; // the device names the examples use

async function cleanUp(): Promise<void> {
  for (const name of NAMES) await dm.remove(name).catch(() => undefined);
  await sweepSets(); // the example pools are named devmapper-…-pool
  for (const l of await loop.list()) {
    if (l.backingFile === '/tmp/disk.img' || (dir && l.backingFile.startsWith(dir))) await loop.detach(l.number).catch(() => undefined);
  }
  await rm('/tmp/disk.img', { force: true });
}

beforeAll(async () => {
  // /var/tmp, not /tmp: the backing files of a 100G sparse pool want a disk, not the VM's tmpfs.
  dir = await mkdtemp(join('/var/tmp', 'devmapper-doc-'));
  await cleanUp();
});
afterAll(async () => {
  await cleanUp();
  await rm(dir, { recursive: true, force: true });
});

describe('examples run as written', () => {
  it('docs/dm.md: the REPL session (a disk image, a loop device, a linear device)', async () => {
    expect(await runAndCheck(block('docs/dm.md', "loop.attach('/tmp/disk.img')"))).toBe(3);
  });

  it('docs/thin-pools.md: the pool tour (thin devices, snapshots, a one-trip snapshot device, resize)', async () => {
    const code = block('docs/thin-pools.md', 'createSnapshotDevice').replaceAll("'/var/lib/demo'", JSON.stringify(join(dir, 'thin-pools')));
    expect(await runAndCheck(code)).toBe(1);
  });

  it('README: raw device-mapper', async () => {
    expect(await runAndCheck(block('README.md', "dm.create('zeros'"))).toBe(2);
  });

  it('README: a device set', async () => {
    const code = block('README.md', 'DeviceSet.open')
      .replaceAll("'/var/lib/myruntime/devicemapper'", JSON.stringify(join(dir, 'device-set')))
      .replaceAll("'/run/ctr/container1/rootfs'", JSON.stringify(join(dir, 'rootfs')));
    expect(await runAndCheck(code)).toBe(0);
  });

  it('README: the snapshotter in-process', async () => {
    const code = block('README.md', 'Snapshotter.open').replaceAll(
      "'/var/lib/myruntime/snapshots'",
      JSON.stringify(join(dir, 'snapshots')),
    );
    expect(await runAndCheck(code)).toBe(1);
  });

  it('README: a thin pool on sparse files', async () => {
    const code = block('README.md', 'ThinPool.createLoopBacked').replaceAll("'/var/lib/demo'", JSON.stringify(join(dir, 'readme')));
    expect(await runAndCheck(code)).toBe(2);
  });
});
