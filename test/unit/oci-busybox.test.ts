// scripts/oci-busybox.mjs, the image archive the containerd tests import: read back with tar's
// parser, every digest and size checked, the layer's contents, and the same bytes twice.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { Parser } from 'tar';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BUSYBOX, buildBusyboxImage, DEFAULT_NAME, DEFAULT_RELEASE, type BusyboxImage } from '../../scripts/oci-busybox.mjs';

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkpath: string;
  data: Buffer;
}

/** A tar (gzip or not) as path → entry. */
function untar(buf: Buffer): Promise<Map<string, Entry>> {
  return new Promise((resolve, reject) => {
    const out = new Map<string, Entry>();
    const p = new Parser({
      onReadEntry: (e) => {
        const chunks: Buffer[] = [];
        e.on('data', (c: Buffer) => chunks.push(c));
        e.on('end', () =>
          out.set(e.path, {
            type: e.type,
            mode: e.mode ?? -1,
            uid: e.uid ?? -1,
            gid: e.gid ?? -1,
            mtime: e.mtime?.getTime() ?? -1,
            linkpath: e.linkpath ?? '',
            data: Buffer.concat(chunks),
          }),
        );
      },
    });
    p.on('end', () => resolve(out));
    p.on('error', reject);
    p.end(buf);
  });
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

let dir: string;
let image: BusyboxImage;
let archive: Map<string, Entry>;
let bytes: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-busybox-'));
  image = await buildBusyboxImage(join(dir, 'a.tar'));
  bytes = await readFile(join(dir, 'a.tar'));
  archive = await untar(bytes);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The blob a descriptor names, its digest and size checked. */
function blob(d: Descriptor): Buffer {
  const e = archive.get(`blobs/sha256/${d.digest.slice('sha256:'.length)}`);
  expect(e, d.digest).toBeDefined();
  expect(sha256(e!.data)).toBe(d.digest);
  expect(e!.data.length).toBe(d.size);
  return e!.data;
}

it('is an OCI layout whose index names the image for ctr import', () => {
  expect(JSON.parse(archive.get('oci-layout')!.data.toString())).toEqual({ imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(archive.get('index.json')!.data.toString()) as { manifests: Descriptor[] };
  expect(index.manifests).toHaveLength(1);
  const [m] = index.manifests;
  expect(m!.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  expect(m!.digest).toBe(image.manifest);
  expect(m!.annotations).toEqual({ 'io.containerd.image.name': DEFAULT_NAME, 'org.opencontainers.image.ref.name': 'test' });
  expect(image.size).toBe(bytes.length);
});

/** The manifest the index names. */
function manifestOf(): { config: Descriptor; layers: Descriptor[] } {
  const index = JSON.parse(archive.get('index.json')!.data.toString()) as { manifests: Descriptor[] };
  return JSON.parse(blob(index.manifests[0]!).toString()) as { config: Descriptor; layers: Descriptor[] };
}

it('has right digests and sizes from manifest to layer, and the diff id of the uncompressed layer', () => {
  const manifest = manifestOf();
  expect(manifest.config.digest).toBe(image.config);
  expect(manifest.layers.map((l) => [l.mediaType, l.digest])).toEqual([['application/vnd.oci.image.layer.v1.tar+gzip', image.layer]]);
  const config = JSON.parse(blob(manifest.config).toString()) as { os: string; rootfs: { diff_ids: string[] } };
  expect(config.os).toBe('linux');
  expect(config.rootfs.diff_ids).toEqual([image.diffId]);
  expect(sha256(gunzipSync(blob(manifest.layers[0]!)))).toBe(image.diffId);
  // Nothing else in blobs/.
  expect([...archive.keys()].filter((p) => /^blobs\/sha256\/./.test(p))).toHaveLength(3);
});

it("layer: busybox, applet links, root's passwd and group, the release line; root-owned, fixed mtime", async () => {
  const layer = await untar(blob(manifestOf().layers[0]!));
  expect(layer.get('bin/busybox')!.data.equals(await readFile(BUSYBOX))).toBe(true);
  expect(layer.get('bin/busybox')!.mode).toBe(0o755);
  for (const a of [
    'sh',
    'cat',
    'echo',
    'ls',
    'mkdir',
    'touch',
    'sleep',
    'rm',
    'mv',
    'chown',
    'chmod',
    'stat',
    'true',
    'false',
    'test',
    'id',
    'wc',
    'head',
    'dd',
    'sync',
  ])
    expect([a, layer.get(`bin/${a}`)?.type, layer.get(`bin/${a}`)?.linkpath]).toEqual([a, 'SymbolicLink', 'busybox']);
  expect(layer.get('etc/image-release')!.data.toString()).toBe(`${DEFAULT_RELEASE}\n`);
  expect(layer.get('etc/passwd')!.data.toString()).toMatch(/^root:x:0:0:/m);
  expect(layer.get('etc/group')!.data.toString()).toMatch(/^root:x:0:/m);
  expect(layer.get('tmp/')!.mode).toBe(0o1777);
  for (const [path, e] of layer) expect([path, e.uid, e.gid, e.mtime]).toEqual([path, 0, 0, Date.parse('2024-01-01T00:00:00Z')]);
});

it('writes the same bytes again, and takes a name and a release line', async () => {
  await buildBusyboxImage(join(dir, 'b.tar'));
  expect((await readFile(join(dir, 'b.tar'))).equals(bytes)).toBe(true);
  const other = await buildBusyboxImage(join(dir, 'c.tar'), { name: 'example.com/x/y:v2', release: 'other line' });
  expect(other.name).toBe('example.com/x/y:v2');
  expect(other.diffId).not.toBe(image.diffId);
  const index = JSON.parse((await untar(await readFile(join(dir, 'c.tar')))).get('index.json')!.data.toString()) as {
    manifests: Descriptor[];
  };
  expect(index.manifests[0]!.annotations!['org.opencontainers.image.ref.name']).toBe('v2');
});
