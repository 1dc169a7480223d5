// containerd's snapshotter test suite (snapshots/testsuite), case by case, as
// kernel tests of our Snapshotter: each case written from what it checks in
// containerd (written anew, not copied), against real thin devices, real
// filesystems and real mounts. Keys look like containerd's (paths under a work
// directory), every snapshot device is unmounted before its commit, and trees
// are compared the way containerd's fstest does (see snapshotter-helpers.ts).
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DmError, Snapshotter, type SnapshotInfo } from '../../lib/index';
import { SCRATCH, sweep, sweepSets } from './helpers';
import {
  apply,
  checkSnapshots,
  chownPath,
  createDir,
  createFile,
  diffWithApplier,
  hardLink,
  isMounted,
  manifest,
  manifestDiff,
  mountAll,
  mountAllWithTool,
  removeAll,
  renamePath,
  treeDiff,
  unmountAll,
  withMounted,
  type Applier,
} from './snapshotter-helpers';

/** The label containerd's suite puts on everything (so its garbage collector keeps it). */
const opt = { labels: { 'containerd.io/gc.root': new Date().toISOString() } };

let n = 0;

/**
 * One containerd case: a fresh snapshotter (own root, own pool) and a work directory,
 * both under SCRATCH; whatever the case left mounted is unmounted, and the snapshotter closed.
 */
function conformance(name: string, fn: (s: Snapshotter, work: string) => Promise<void>, timeout?: number): void {
  it(
    name,
    async () => {
      const base = `${SCRATCH}/snap-${++n}`;
      const work = `${base}/work`;
      await mkdir(work, { recursive: true });
      const s = await Snapshotter.open({ root: `${base}/root`, baseSize: '64M', dataSize: '1G', metadataSize: '16M' });
      try {
        await fn(s, work);
      } finally {
        const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
        for (const m of mounts.filter((m) => m.startsWith(`${base}/`)).reverse()) await unmountAll(m).catch(() => undefined);
        await s.close();
      }
    },
    timeout,
  );
}

/** `p` rejects with a DmError of `code`. */
async function expectCode(p: Promise<unknown>, code: string): Promise<DmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a rejection with ${code}`).toBeInstanceOf(DmError);
  expect((err as DmError).code, (err as DmError).message).toBe(code);
  return err as DmError;
}

/** Prepare `key` from `parent`, mount it at `${work}/${dir}` (containerd's snapshotterPrepareMount); returns the mount point. */
async function prepareMounted(s: Snapshotter, work: string, dir: string, parent: string): Promise<string> {
  const target = join(work, dir);
  const mounts = await s.prepare(target, parent, opt);
  expect(mounts.length).toBeGreaterThan(0);
  await mountAll(mounts, target);
  return target;
}

/** Run `fn` on a mounted read-only view of committed `name`; the view is removed after. */
async function inView<T>(s: Snapshotter, work: string, name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const key = `${name}-look-${++n}`;
  const mounts = await s.view(key, name);
  try {
    return await withMounted(mounts, work, fn);
  } finally {
    await s.remove(key);
  }
}

/** Every snapshot walk() reports, by name. */
async function walked(s: Snapshotter, ...filters: string[]): Promise<Map<string, SnapshotInfo>> {
  const out = new Map<string, SnapshotInfo>();
  await s.walk(
    (info) => {
      out.set(info.name, info);
    },
    ...filters,
  );
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(sweep);
afterAll(sweepSets);

describe('the tree comparison (as containerd fstest compares)', () => {
  it('sees a missing, an extra, a changed file and a changed mode, owner or hard-link group; not timestamps', async () => {
    await mkdir(SCRATCH, { recursive: true });
    const a = await mkdtemp(`${SCRATCH}/cmp-a-`);
    const b = await mkdtemp(`${SCRATCH}/cmp-b-`);
    const tree = apply(createDir('/d', 0o755), createFile('/d/f', 'x', 0o644), createFile('/g', 'y', 0o600), hardLink('/g', '/d/g2'));
    await tree(a);
    await sleep(20);
    await tree(b);
    expect(await treeDiff(a, b)).toBe('');
    expect((await manifest(a)).size).toBe(4);
    const changes: [Applier, RegExp][] = [
      [removeAll('/d/f'), /- \/d\/f/],
      [createFile('/extra', '', 0o644), /\+ \/extra/],
      [createFile('/d/f', 'z', 0o644), /~ \/d\/f/],
      [createDir('/d', 0o700), /~ \/d:/],
      [chownPath('/g', 1, 1), /~ \/g:/],
      [removeAll('/d/g2'), /- \/d\/g2/],
    ];
    for (const [change, seen] of changes) {
      const c = await mkdtemp(`${SCRATCH}/cmp-c-`);
      await tree(c);
      await change(c);
      expect(await treeDiff(a, c)).toMatch(seen);
      await rm(c, { recursive: true });
    }
    // the hard-link group counts: /g alone (its link gone) differs from /g linked
    const c = await mkdtemp(`${SCRATCH}/cmp-c-`);
    await tree(c);
    await removeAll('/d/g2')(c);
    expect(await treeDiff(a, c)).toMatch(/~ \/g:/);
    await rm(a, { recursive: true });
    await rm(b, { recursive: true });
    await rm(c, { recursive: true });
  });
});

describe("containerd's snapshotter suite", () => {
  conformance('Basic: prepare, commit, a child over it, a view of both, remove in order', async (s, work) => {
    const initial = apply(createFile('/foo', 'foo\n', 0o777), createDir('/a', 0o755), createDir('/a/b', 0o755), createDir('/a/b/c', 0o755));
    const diff = apply(createFile('/bar', 'bar\n', 0o777), createFile('/foo', 'bar\n', 0o777), removeAll('/a/b'));

    const preparing = await prepareMounted(s, work, 'preparing', '');
    try {
      await initial(preparing);
    } finally {
      await unmountAll(preparing);
    }
    const committed = join(work, 'committed');
    await s.commit(committed, preparing, opt);
    const si = await s.stat(committed);
    expect(si).toMatchObject({ name: committed, parent: '', kind: 'committed' });
    await expectCode(s.stat(preparing), 'ERR_DM_NOT_FOUND'); // the active key is gone once committed

    const next = await prepareMounted(s, work, 'nextlayer', committed);
    try {
      expect(await diffWithApplier(next, initial, work)).toBe('');
      await diff(next);
    } finally {
      await unmountAll(next);
    }
    expect(await s.stat(next)).toMatchObject({ name: next, parent: committed, kind: 'active' });
    const nextCommitted = join(work, 'committed-next');
    await s.commit(nextCommitted, next, opt);
    const si2 = await s.stat(nextCommitted);
    expect(si2).toMatchObject({ name: nextCommitted, parent: committed, kind: 'committed' });
    await expectCode(s.stat(next), 'ERR_DM_NOT_FOUND');

    const all = await walked(s);
    expect(all.get(si.name)).toEqual(si);
    expect(all.get(si2.name)).toEqual(si2);

    const nextnext = join(work, 'nextnextlayer');
    const viewMounts = await s.view(nextnext, nextCommitted, opt);
    await mountAll(viewMounts, nextnext);
    try {
      expect(await diffWithApplier(nextnext, apply(initial, diff), work)).toBe('');
    } finally {
      await unmountAll(nextnext);
    }
    await s.remove(nextnext);

    const refused = await expectCode(s.remove(committed), 'ERR_DM_FAILED_PRECONDITION'); // it has a child
    expect(refused.message).toMatch(/remov/i);
    await s.remove(nextCommitted);
    await s.remove(committed);
    expect([...(await walked(s)).keys()]).toEqual([]);
  });

  conformance('StatActive: a prepared key stats as active, no parent, its labels', async (s, work) => {
    const preparing = await prepareMounted(s, work, 'preparing', '');
    await unmountAll(preparing);
    const si = await s.stat(preparing);
    expect(si).toMatchObject({ name: preparing, kind: 'active', parent: '' });
    expect(si.labels).toMatchObject(opt.labels);
    expect(si.created).toBeInstanceOf(Date);
  });

  conformance('StatCommitted: a committed name stats as committed, no parent', async (s, work) => {
    const preparing = await prepareMounted(s, work, 'preparing', '');
    await writeFile(join(preparing, 'foo'), 'foo\n');
    await unmountAll(preparing);
    const committed = join(work, 'committed');
    await s.commit(committed, preparing, opt);
    const si = await s.stat(committed);
    expect(si).toMatchObject({ name: committed, kind: 'committed', parent: '' });
    expect(si.labels).toMatchObject(opt.labels);
  });

  conformance('TransitivityTest: A <- B: B names A as parent, A names none', async (s, work) => {
    const preparing = await prepareMounted(s, work, 'preparing', '');
    try {
      await writeFile(join(preparing, 'foo'), 'foo\n');
    } finally {
      await unmountAll(preparing);
    }
    const snapA = join(work, 'snapA');
    await s.commit(snapA, preparing, opt);

    const next = await prepareMounted(s, work, 'next', snapA);
    try {
      expect(await readFile(join(next, 'foo'), 'utf8')).toBe('foo\n');
      await writeFile(join(next, 'foo'), 'foo bar\n');
    } finally {
      await unmountAll(next);
    }
    const snapB = join(work, 'snapB');
    await s.commit(snapB, next, opt);

    const siA = await s.stat(snapA);
    const siB = await s.stat(snapB);
    const siParentB = await s.stat(siB.parent);
    expect(siA.parent).toBe('');
    expect(siB.parent).toBe(snapA);
    expect(siParentB.name).toBe(snapA);
    expect(siParentB.parent).toBe('');
    // and each layer kept its own content
    expect(await inView(s, work, snapA, (d) => readFile(join(d, 'foo'), 'utf8'))).toBe('foo\n');
    expect(await inView(s, work, snapB, (d) => readFile(join(d, 'foo'), 'utf8'))).toBe('foo bar\n');
  });

  conformance('PreareViewFailingtest: a key taken by prepare or view cannot be taken again', async (s, work) => {
    const preparing = await prepareMounted(s, work, 'preparing', '');
    await unmountAll(preparing);
    const snapA = join(work, 'snapA');
    await s.commit(snapA, preparing, opt);

    const newLayer = join(work, 'newlayer');
    await s.prepare(newLayer, snapA, opt);
    await expectCode(s.view(newLayer, snapA, opt), 'ERR_DM_ALREADY_EXISTS');
    expect(await s.stat(newLayer)).toMatchObject({ kind: 'active', parent: snapA }); // the failed view left it alone

    const prepLayer = join(work, 'prepLayer');
    await s.prepare(prepLayer, snapA, opt);
    await expectCode(s.prepare(prepLayer, snapA, opt), 'ERR_DM_ALREADY_EXISTS');

    const viewLayer = join(work, 'viewLayer');
    await s.view(viewLayer, snapA, opt);
    await expectCode(s.view(viewLayer, snapA, opt), 'ERR_DM_ALREADY_EXISTS');
    expect(await s.stat(viewLayer)).toMatchObject({ kind: 'view', parent: snapA });

    // keys and committed names share one namespace (containerd's metadata store)
    await expectCode(s.prepare(snapA, '', opt), 'ERR_DM_ALREADY_EXISTS');
    expect([...(await walked(s)).keys()].sort()).toEqual([newLayer, prepLayer, snapA, viewLayer].sort());
  });

  conformance('Update: labels replaced whole or by field path; created, kind, parent, name never change', async (s) => {
    const t1 = Date.now();
    // containerd's baseTestSnapshots: c1 <- c2 <- {a1 active, v1 view}; a2 active and v2 view with no parent
    await s.prepare('c1-a', '', opt);
    await s.commit('c1', 'c1-a', opt);
    await s.prepare('c2-a', 'c1', opt);
    await s.commit('c2', 'c2-a', opt);
    await s.prepare('a1', 'c2', opt);
    await s.prepare('a2', '', opt);
    await s.view('v1', 'c2', opt);
    await s.view('v2', '', opt);
    const t2 = Date.now();

    const cases = [
      { name: 'c1', kind: 'committed', parent: '' },
      { name: 'c2', kind: 'committed', parent: 'c1' },
      { name: 'a1', kind: 'active', parent: 'c2' },
      { name: 'a2', kind: 'active', parent: '' },
      { name: 'v1', kind: 'view', parent: 'c2' },
      { name: 'v2', kind: 'view', parent: '' },
    ] as const;
    for (const tc of cases) {
      let st = await s.stat(tc.name);
      expect(st.created.getTime(), tc.name).toBeGreaterThanOrEqual(t1);
      expect(st.created.getTime(), tc.name).toBeLessThanOrEqual(t2);
      expect(st.updated.getTime(), `${tc.name}: updated equals created until an update`).toBe(st.created.getTime());
      expect(st, tc.name).toMatchObject(tc);
      const created = st.created.getTime();

      const root = new Date().toISOString();
      let expected: Record<string, string> = { l1: 'v1', l2: 'v2', l3: 'v3', 'containerd.io/gc.root': root };
      const u1 = Date.now();
      st = await s.update({ ...st, parent: 'doesnotexist', labels: expected }); // no paths: the labels, whole
      const u2 = Date.now();
      expect(st.created.getTime(), tc.name).toBe(created);
      expect(st.updated.getTime(), tc.name).toBeGreaterThanOrEqual(u1);
      expect(st.updated.getTime(), tc.name).toBeLessThanOrEqual(u2);
      expect(st, `${tc.name}: parent is not updatable`).toMatchObject(tc);
      expect(st.labels, tc.name).toEqual(expected);

      // by path: labels.l1 set, labels.l2 gone (absent from the given labels), l4 ignored (not named)
      st = await s.update({ ...st, labels: { l1: 'updated', l4: 'v4' } }, 'labels.l1', 'labels.l2');
      expect(st.labels, tc.name).toEqual({ l1: 'updated', l3: 'v3', 'containerd.io/gc.root': root });
      expect((await s.stat(tc.name)).labels, `${tc.name}: stored`).toEqual(st.labels);

      expected = { l4: 'v4', 'containerd.io/gc.root': root };
      st = await s.update({ ...st, labels: expected }, 'labels');
      expect(st.labels, tc.name).toEqual(expected);

      await expectCode(s.update({ ...st, parent: 'doesnotexist' }, 'parent'), 'ERR_DM_INVALID_ARG');
      expect(await s.stat(tc.name), tc.name).toMatchObject({ ...tc, labels: expected });
    }
  });

  conformance('Remove: a removed key and a removed committed name can be taken again', async (s, work) => {
    let mounts = await s.prepare('committed-a', '', opt);
    await withMounted(mounts, work, (d) => writeFile(join(d, 'which'), 'first committed-1'));
    await s.commit('committed-1', 'committed-a', opt);
    await s.prepare('reuse-1', 'committed-1', opt);
    await s.remove('reuse-1');
    await s.view('reuse-1', 'committed-1', opt);
    expect(await s.stat('reuse-1')).toMatchObject({ kind: 'view', parent: 'committed-1' });
    await s.remove('reuse-1');
    mounts = await s.prepare('reuse-1', '', opt);
    expect(await s.stat('reuse-1')).toMatchObject({ kind: 'active', parent: '' });
    await withMounted(mounts, work, async (d) => {
      expect(await readdir(d)).toEqual([]); // a fresh filesystem, nothing of committed-1's
      await writeFile(join(d, 'which'), 'second committed-1');
    });
    await s.remove('committed-1');
    await s.commit('committed-1', 'reuse-1', opt);
    expect(await s.stat('committed-1')).toMatchObject({ kind: 'committed', parent: '' });
    await expectCode(s.stat('reuse-1'), 'ERR_DM_NOT_FOUND');
    expect(await inView(s, work, 'committed-1', (d) => readFile(join(d, 'which'), 'utf8'))).toBe('second committed-1');
  });

  conformance('Walk: filters by kind, name, parent and labels; terms AND, filters OR', async (s) => {
    const gc = { 'containerd.io/gc.root': 'check-walk' };
    await s.prepare('a-np', '', { labels: gc });
    await s.prepare('p-tmp', '', { labels: gc });
    await s.commit('p', 'p-tmp', { labels: gc });
    await s.prepare('a', 'p', { labels: gc });
    await s.view('v', 'p', { labels: gc });
    await s.prepare('p-wl-tmp', '', { labels: gc });
    await s.commit('p-wl', 'p-wl-tmp', { labels: { l: '1', ...gc } });
    await s.prepare('a-wl', 'p-wl', { labels: { l: '2', ...gc } });
    await s.view('v-wl', 'p-wl', { labels: { l: '3', ...gc } });
    await s.prepare('a-np-wl', '', { labels: { l: '2', ...gc } });

    const cases: [string[], string[]][] = [
      [['labels."containerd.io/gc.root"==check-walk'], ['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl']],
      [['kind==active,labels."containerd.io/gc.root"==check-walk'], ['a-np', 'a', 'a-wl', 'a-np-wl']],
      [['kind==view,labels."containerd.io/gc.root"==check-walk'], ['v', 'v-wl']],
      [['kind==committed,labels."containerd.io/gc.root"==check-walk'], ['p', 'p-wl']],
      [
        ['name==p', 'name==a-np-wl'],
        ['p', 'a-np-wl'],
      ],
      [['name==a-wl,labels.l'], ['a-wl']],
      [['parent==p'], ['a', 'v']],
      [['parent!="",labels."containerd.io/gc.root"==check-walk'], ['a', 'v', 'a-wl', 'v-wl']],
      [['labels.l'], ['p-wl', 'a-wl', 'v-wl', 'a-np-wl']],
      [['labels.l==2'], ['a-wl', 'a-np-wl']],
    ];
    for (const [filters, matches] of cases) {
      expect([...(await walked(s, ...filters)).keys()].sort(), JSON.stringify(filters)).toEqual([...matches].sort());
    }
  });

  conformance(
    'LayerFileupdate: a file rewritten in an upper layer reads as rewritten (five runs across second boundaries)',
    async (s, work) => {
      const l1 = apply(
        createDir('/etc', 0o700),
        createFile('/etc/hosts', 'mydomain 10.0.0.1', 0o644),
        createFile('/etc/profile', 'PATH=/usr/bin', 0o644),
      );
      const l2 = apply(
        createFile('/etc/hosts', 'mydomain 10.0.0.2', 0o644),
        createFile('/etc/profile', 'PATH=/usr/bin', 0o666),
        createDir('/root', 0o700),
        createFile('/root/.bashrc', 'PATH=/usr/sbin:/usr/bin', 0o644),
      );
      for (let i = 0; i < 5; i++) {
        const { names, diffs } = await checkSnapshots(s, work, l1, l2);
        expect(diffs).toEqual([]);
        expect(names).toHaveLength(2);
        await sleep(1000 - (Date.now() % 1000)); // the next run starts in a new second
      }
    },
    180_000,
  );

  conformance('RemoveDirectoryInLowerLayer: a directory removed and re-made above hides what was below', async (s, work) => {
    const l1 = apply(createDir('/lib', 0o700), createFile('/lib/hidden', '', 0o644));
    const l2 = apply(removeAll('/lib'), createDir('/lib', 0o700), createFile('/lib/not-hidden', '', 0o644));
    const l3 = apply(createFile('/lib/newfile', '', 0o644));
    const { names, diffs } = await checkSnapshots(s, work, l1, l2, l3);
    expect(diffs).toEqual([]);
    expect(await inView(s, work, names[2]!, (d) => readdir(join(d, 'lib')))).toEqual(['newfile', 'not-hidden']);
  });

  conformance('Chown: ownership changed in an upper layer on directories and a file', async (s, work) => {
    const l1 = apply(
      createDir('/opt', 0o700),
      createDir('/opt/a', 0o700),
      createDir('/opt/a/b', 0o700),
      createFile('/opt/a/b/file.txt', 'hello', 0o644),
    );
    const l2 = apply(chownPath('/opt', 1, 1), chownPath('/opt/a', 1, 1), chownPath('/opt/a/b', 1, 1), chownPath('/opt/a/b/file.txt', 1, 1));
    const { names, diffs } = await checkSnapshots(s, work, l1, l2);
    expect(diffs).toEqual([]);
    const owners = await inView(s, work, names[1]!, async (d) =>
      Promise.all(['opt', 'opt/a', 'opt/a/b', 'opt/a/b/file.txt'].map(async (p) => (await lstat(join(d, p))).uid)),
    );
    expect(owners).toEqual([1, 1, 1, 1]);
    const below = await inView(s, work, names[0]!, async (d) => (await lstat(join(d, 'opt/a/b/file.txt'))).uid);
    expect(below).toBe(0);
  });

  conformance('DirectoryPermissionOnCommit: owners and modes of directories survive each commit', async (s, work) => {
    const l1 = apply(
      createDir('/dir1', 0o700),
      createDir('/dir2', 0o700),
      createDir('/dir3', 0o700),
      createDir('/dir4', 0o700),
      createFile('/dir4/f1', '...', 0o644),
      createDir('/dir5', 0o700),
      createFile('/dir5/f1', '...', 0o644),
      chownPath('/dir1', 1, 1),
      chownPath('/dir2', 1, 1),
      chownPath('/dir3', 1, 1),
      chownPath('/dir5', 1, 1),
      chownPath('/dir5/f1', 1, 1),
    );
    const l2 = apply(chownPath('/dir2', 0, 0), removeAll('/dir3'), chownPath('/dir4', 1, 1), chownPath('/dir4/f1', 1, 1));
    const l3 = apply(
      createDir('/dir3', 0o700),
      chownPath('/dir3', 1, 1),
      removeAll('/dir5'),
      createDir('/dir5', 0o700),
      chownPath('/dir5', 1, 1),
    );
    const { diffs } = await checkSnapshots(s, work, l1, l2, l3);
    expect(diffs).toEqual([]);
  });

  conformance('RemoveIntermediateSnapshot: a committed snapshot with a child cannot be removed; top down, all can', async (s, work) => {
    const base = await prepareMounted(s, work, 'base', '');
    await unmountAll(base);
    const committedBase = join(work, 'committed-base');
    await s.commit(committedBase, base, opt);
    const intermediate = join(work, 'intermediate');
    await s.prepare(intermediate, committedBase, opt);
    const committedInter = join(work, 'committed-inter');
    await s.commit(committedInter, intermediate, opt);
    const topLayer = join(work, 'toplayer');
    await s.prepare(topLayer, committedInter, opt);

    await expectCode(s.remove(committedInter), 'ERR_DM_FAILED_PRECONDITION');
    await expectCode(s.remove(committedBase), 'ERR_DM_FAILED_PRECONDITION');
    expect(await s.stat(committedInter)).toMatchObject({ kind: 'committed', parent: committedBase }); // the refusal changed nothing

    await s.remove(topLayer);
    await s.remove(committedInter);
    await s.remove(committedBase);
    for (const k of [topLayer, committedInter, committedBase]) await expectCode(s.stat(k), 'ERR_DM_NOT_FOUND');
    expect((await walked(s)).size).toBe(0);
  });

  conformance('DeletedFilesInChildSnapshot: a file deleted in a child stays deleted in the grandchild', async (s, work) => {
    const l1 = apply(createFile('/foo', 'foo\n', 0o777), createFile('/foobar', 'foobar\n', 0o777));
    const l2 = apply(removeAll('/foobar'));
    const l3 = apply();
    const { names, diffs } = await checkSnapshots(s, work, l1, l2, l3);
    expect(diffs).toEqual([]);
    expect(await inView(s, work, names[2]!, (d) => readdir(d))).toEqual(['foo']);
  });

  conformance('MoveFileFromLowerLayer: files moved (removed, hard-linked) out of lower-layer directories', async (s, work) => {
    const l1 = apply(
      createDir('/dir1', 0o700),
      createFile('/dir1/f1', 'Hello', 0o644),
      createDir('dir2', 0o700),
      createFile('dir2/f2', '...', 0o644),
    );
    const l2 = apply(
      createDir('/dir3', 0o700),
      createFile('/dir3/f1', 'Hello', 0o644),
      removeAll('/dir1'),
      hardLink('dir2/f2', 'dir3/f2'),
      removeAll('dir2/f2'),
    );
    const { names, diffs } = await checkSnapshots(s, work, l1, l2);
    expect(diffs).toEqual([]);
    const top = await inView(s, work, names[1]!, async (d) => ({
      root: (await readdir(d)).sort(),
      dir2: await readdir(join(d, 'dir2')),
      f2: await readFile(join(d, 'dir3/f2'), 'utf8'),
    }));
    expect(top).toEqual({ root: ['dir2', 'dir3'], dir2: [], f2: '...' });
  });

  conformance('Rename: a directory and files renamed over a lower layer (a file renamed over another)', async (s, work) => {
    const l1 = apply(
      createDir('/dir1', 0o700),
      createDir('/somefiles', 0o700),
      createFile('/somefiles/f1', 'was here first!', 0o644),
      createFile('/somefiles/f2', 'nothing interesting', 0o644),
    );
    const l2 = apply(
      renamePath('/dir1', '/dir2'), // devmapper is a block snapshot: directory renames work (overlayfs skips this one)
      createFile('/somefiles/f1-overwrite', 'new content 1', 0o644),
      renamePath('/somefiles/f1-overwrite', '/somefiles/f1'),
      renamePath('/somefiles/f2', '/somefiles/f3'),
    );
    const { names, diffs } = await checkSnapshots(s, work, l1, l2);
    expect(diffs).toEqual([]);
    const top = await inView(s, work, names[1]!, async (d) => ({
      root: (await readdir(d)).sort(),
      files: (await readdir(join(d, 'somefiles'))).sort(),
      f1: await readFile(join(d, 'somefiles/f1'), 'utf8'),
    }));
    expect(top).toEqual({ root: ['dir2', 'somefiles'], files: ['f1', 'f3'], f1: 'new content 1' });
  });

  conformance('ViewReadonly: a view mounts read-only, for real (writes fail with EROFS)', async (s, work) => {
    const preparing = join(work, 'preparing');
    await s.prepare(preparing, '', opt);
    const committed = join(work, 'committed');
    await s.commit(committed, preparing, opt);
    const view = join(work, 'view');
    const m = await s.view(view, committed, opt);
    expect(m.length).toBeGreaterThan(0);
    for (const mount of m) expect(mount.options).toContain('ro');
    const mountPoint = join(work, 'view-mount');
    await mountAllWithTool(m, mountPoint); // mount(8), as a user would; the other cases use mount(2)
    let err: unknown;
    try {
      await writeFile(join(mountPoint, 'testfile'), 'testcontent', { mode: 0o777 }).catch((e: unknown) => {
        err = e;
      });
    } finally {
      await unmountAll(mountPoint);
    }
    expect(err, 'a write to a view must fail').toMatchObject({ code: 'EROFS' });
    expect(await isMounted(mountPoint)).toBe(false);
    await s.remove(view);
    await s.remove(committed);
  });

  conformance('StatInWalk: stat from inside a walk callback gives the same info', async (s) => {
    const prefix = 'stats-in-walk-';
    await s.prepare(`${prefix}c1-a`, '', opt);
    await s.commit(`${prefix}c1`, `${prefix}c1-a`, opt);
    await s.prepare(`${prefix}c2-a`, `${prefix}c1`, opt);
    await s.commit(`${prefix}c2`, `${prefix}c2-a`, opt);
    await s.prepare(`${prefix}a1`, `${prefix}c2`, opt);
    await s.view(`${prefix}v1`, `${prefix}c2`, opt);
    const seen: string[] = [];
    await s.walk(async (info) => {
      if (!info.name.startsWith(prefix)) return;
      const again = await s.stat(info.name);
      expect(again).toEqual(info);
      seen.push(info.name);
    });
    expect(seen.sort()).toEqual([`${prefix}a1`, `${prefix}c1`, `${prefix}c2`, `${prefix}v1`]);
  });

  conformance('CloseTwice: close after some work, and again, both succeed; the root reopens with the work kept', async (s, work) => {
    const name = `closeTwice-${process.pid}`;
    const prepare = `${name}-prepare`;
    await s.prepare(prepare, '', opt);
    await s.commit(name, prepare, opt);
    await s.prepare('kept', name, opt);
    await s.remove('kept');
    await s.prepare('kept', '', opt);
    await s.remove(name);
    await s.close();
    await s.close();
    // what the closes put away is there again: the remove stuck, the active key stayed
    const again = await Snapshotter.open({ root: join(work, '..', 'root') });
    try {
      const all = await walked(again);
      expect([...all.keys()]).toEqual(['kept']);
      expect(all.get('kept')).toMatchObject({ kind: 'active', parent: '' });
      await expectCode(again.stat(name), 'ERR_DM_NOT_FOUND');
    } finally {
      await again.close();
    }
  });

  conformance('errors: the codes containerd maps to errdefs NotFound, AlreadyExists, FailedPrecondition, InvalidArgument', async (s) => {
    await expectCode(s.stat('nope'), 'ERR_DM_NOT_FOUND');
    await expectCode(s.prepare('x', 'no-such-parent'), 'ERR_DM_NOT_FOUND');
    await expectCode(s.remove('nope'), 'ERR_DM_NOT_FOUND');
    await expectCode(s.commit('c', 'nope'), 'ERR_DM_NOT_FOUND');
    await s.prepare('base', '', opt);
    await expectCode(s.prepare('x', 'base'), 'ERR_DM_INVALID_ARG'); // an active snapshot is no parent
    await s.commit('c', 'base', opt);
    await expectCode(s.commit('c2', 'c'), 'ERR_DM_FAILED_PRECONDITION'); // committed again
    await expectCode(s.mounts('c'), 'ERR_DM_FAILED_PRECONDITION');
    await s.view('v', 'c', opt);
    await expectCode(s.commit('c3', 'v'), 'ERR_DM_FAILED_PRECONDITION'); // a view is not committed
    await s.prepare('a', 'c', opt);
    await expectCode(s.commit('c', 'a'), 'ERR_DM_ALREADY_EXISTS');
    await expectCode(s.update({ name: 'a', labels: {} }, 'kind'), 'ERR_DM_INVALID_ARG');
    expect((await s.mounts('a'))[0]).toMatchObject({ type: 'ext4', source: expect.stringMatching(/^\/dev\/mapper\//) });
    expect((await s.mounts('v'))[0]!.options).toContain('ro');
    expect((await s.mounts('a'))[0]!.options).not.toContain('ro');
    expect([...(await walked(s)).keys()].sort()).toEqual(['a', 'c', 'v']); // the refusals left nothing behind
  });

  conformance('RootPermission: a fresh snapshot is an empty filesystem whose root is 0755 (no lost+found)', async (s, work) => {
    const preparing = await prepareMounted(s, work, 'preparing', '');
    try {
      expect((await lstat(preparing)).mode & 0o777).toBe(0o755);
      expect(await readdir(preparing)).toEqual([]);
    } finally {
      await unmountAll(preparing);
    }
  });

  conformance(
    '128LayersMount: 128 layers, each a snapshot of the one below, read back whole from a view of the top',
    async (s, work) => {
      const lowest = apply(
        createFile('/bottom', 'way at the bottom\n', 0o777),
        createFile('/overwriteme', 'FIRST!\n', 0o777),
        createDir('/addhere', 0o755),
        createDir('/onlyme', 0o755),
        createFile('/onlyme/bottom', 'bye!\n', 0o777),
      );
      const appliers = [lowest];
      for (let i = 1; i <= 127; i++) {
        appliers.push(
          apply(
            createFile('/overwriteme', `${i} WAS HERE!\n`, 0o777),
            createFile(`/addhere/file-${i}`, 'same\n', 0o755),
            removeAll('/onlyme'),
            createDir('/onlyme', 0o755),
            createFile(`/onlyme/file-${i}`, 'only me!\n', 0o777),
          ),
        );
      }
      const flat = join(work, 'flat');
      await mkdir(flat, { recursive: true });

      let parent = '';
      let flatNow = await manifest(flat); // the flat tree as of the layer below, read once per layer
      for (const [i, applier] of appliers.entries()) {
        const preparing = join(work, `prepare-layer-${i}`);
        const mounts = await s.prepare(preparing, parent, opt);
        await mountAll(mounts, preparing);
        try {
          expect(manifestDiff(flatNow, await manifest(preparing)), `layer ${i} before apply`).toBe('');
          await applier(flat);
          await applier(preparing);
          flatNow = await manifest(flat);
          expect(manifestDiff(flatNow, await manifest(preparing)), `layer ${i} after apply`).toBe('');
        } finally {
          await unmountAll(preparing);
        }
        parent = join(work, `committed-${i}`);
        await s.commit(parent, preparing, opt);
      }

      const view = join(work, 'fullview');
      const mounts = await s.view(view, parent, opt);
      await mountAll(mounts, view);
      try {
        expect(await treeDiff(flat, view)).toBe('');
        expect(await readFile(join(view, 'overwriteme'), 'utf8')).toBe('127 WAS HERE!\n');
        expect(await readdir(join(view, 'addhere'))).toHaveLength(127);
        expect(await readdir(join(view, 'onlyme'))).toEqual(['file-127']);
      } finally {
        await unmountAll(view);
      }
      expect(await s.stat(parent)).toMatchObject({ kind: 'committed', parent: join(work, 'committed-126') });
    },
    600_000,
  );
});
