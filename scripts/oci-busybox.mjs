#!/usr/bin/env node
// An OCI image archive built offline from this host's static busybox (Debian's busybox-static), for
// the tests that run real containers: nothing is pulled, so they run without a network.
//
//   scripts/oci-busybox.mjs OUT.tar [--name REF] [--release LINE]
//
// The archive is an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/…): one manifest,
// one config, one gzip-compressed layer holding bin/busybox, a symlink per common applet, etc/passwd
// and etc/group with root, and etc/image-release with one known line. `ctr image import` registers it
// under REF (the index entry's io.containerd.image.name annotation). The output is the same bytes for
// the same busybox: fixed mtimes, root ownership, sorted entries.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Header } from 'tar';

/** The reference the image is imported under by default (a full one: ctr lists it as given). */
export const DEFAULT_NAME = 'docker.io/library/devmapper-busybox:test';
/** The line in the image's /etc/image-release by default. */
export const DEFAULT_RELEASE = 'devmapper-busybox image 1 (busybox-static, built offline)';
/** The busybox the layer carries: the static one, so the image needs no libraries. */
export const BUSYBOX = '/bin/busybox';

/** Applets linked in bin/ (those this busybox has): what tests and shells in the container use. */
const APPLETS = [
  '[', 'awk', 'basename', 'cat', 'chmod', 'chown', 'cmp', 'cp', 'cut', 'date', 'dd', 'df', 'dirname', 'du', 'echo', 'env',
  'false', 'find', 'grep', 'head', 'hostname', 'id', 'kill', 'ln', 'ls', 'md5sum', 'mkdir', 'mknod', 'mount', 'mv', 'printf',
  'ps', 'pwd', 'readlink', 'realpath', 'rm', 'rmdir', 'sed', 'seq', 'sh', 'sha256sum', 'sleep', 'sort', 'stat', 'sync', 'tail',
  'tee', 'test', 'touch', 'tr', 'true', 'truncate', 'umount', 'uname', 'uniq', 'wc', 'xargs', 'yes',
]; // prettier-ignore

/** Fixed time of every entry and of the config (deterministic output). */
const EPOCH = new Date('2024-01-01T00:00:00Z');

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const ARCH = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** One tar entry: ustar header (tar's Header) and the data padded to 512-byte blocks. */
function entry({ path, type = 'File', mode = 0o644, data = Buffer.alloc(0), linkpath }) {
  const header = Buffer.alloc(512);
  const h = new Header({ path, type, mode, uid: 0, gid: 0, uname: 'root', gname: 'root', size: data.length, mtime: EPOCH, linkpath });
  if (h.encode(header, 0)) throw new Error(`tar entry ${path} would need a pax header`);
  return Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** A tar of `entries`, ended by the two zero blocks. */
const tarball = (entries) => Buffer.concat([...entries.map(entry), Buffer.alloc(1024)]);

/** The layer's uncompressed tar: directories first, then files, each list sorted. */
async function layerTar(release) {
  const applets = new Set(execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n'));
  const missing = ['sh', 'cat', 'echo', 'ls', 'true'].filter((a) => !applets.has(a));
  if (missing.length) throw new Error(`${BUSYBOX} lacks the applets ${missing.join(', ')}: is busybox-static installed?`);
  const dir = (path, mode = 0o755) => ({ path: `${path}/`, type: 'Directory', mode });
  const file = (path, text, mode = 0o644) => ({ path, mode, data: Buffer.from(text) });
  return tarball([
    dir('bin'),
    dir('dev'),
    dir('etc'),
    dir('proc'),
    dir('root', 0o700),
    dir('sys'),
    dir('tmp', 0o1777),
    dir('var'),
    { path: 'bin/busybox', mode: 0o755, data: await readFile(BUSYBOX) },
    ...APPLETS.filter((a) => applets.has(a)).map((a) => ({ path: `bin/${a}`, type: 'SymbolicLink', mode: 0o777, linkpath: 'busybox' })),
    file('etc/group', 'root:x:0:\n'),
    file('etc/image-release', `${release}\n`),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
  ]);
}

/**
 * Write the image archive to `outPath`. Returns the reference and digests, for tests that check what
 * containerd recorded.
 * @param {string} outPath
 * @param {{ name?: string, release?: string }} [options]
 */
export async function buildBusyboxImage(outPath, { name = DEFAULT_NAME, release = DEFAULT_RELEASE } = {}) {
  const architecture = ARCH[process.arch];
  if (!architecture) throw new Error(`no OCI architecture name for ${process.arch}`);
  const blobs = new Map(); // digest → bytes
  /** Store a blob; returns its descriptor. */
  const blob = (mediaType, bytes) => {
    const digest = `sha256:${sha256(bytes)}`;
    blobs.set(digest, bytes);
    return { mediaType, digest, size: bytes.length };
  };
  const json = (o) => Buffer.from(JSON.stringify(o));

  const tar = await layerTar(release);
  const diffId = `sha256:${sha256(tar)}`; // the config names layers by their uncompressed digest
  const layer = blob('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(tar, { level: 9 }));
  const created = EPOCH.toISOString();
  const config = blob(
    'application/vnd.oci.image.config.v1+json',
    json({
      created,
      architecture,
      os: 'linux',
      config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created, created_by: 'scripts/oci-busybox.mjs' }],
    }),
  );
  const manifest = blob(
    'application/vnd.oci.image.manifest.v1+json',
    json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] }),
  );
  // ctr 1.6 import names the image from io.containerd.image.name (the full reference); the OCI
  // ref.name (the tag alone) is what other tools read, and what ctr uses with --base-name.
  const tag = name.includes(':') ? name.slice(name.lastIndexOf(':') + 1) : 'latest';
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        ...manifest,
        platform: { architecture, os: 'linux' },
        annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };

  const hex = (digest) => digest.slice('sha256:'.length);
  const archive = tarball([
    { path: 'blobs/', type: 'Directory', mode: 0o755 },
    { path: 'blobs/sha256/', type: 'Directory', mode: 0o755 },
    ...[...blobs.keys()].sort().map((d) => ({ path: `blobs/sha256/${hex(d)}`, data: blobs.get(d) })),
    { path: 'index.json', data: json(index) },
    { path: 'oci-layout', data: json({ imageLayoutVersion: '1.0.0' }) },
  ]);
  await writeFile(outPath, archive);
  return { name, release, manifest: manifest.digest, config: config.digest, layer: layer.digest, diffId, size: archive.length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (flag) => {
    const i = args.indexOf(flag);
    if (i < 0) return undefined;
    const [, value] = args.splice(i, 2);
    if (value === undefined) throw new Error(`${flag} needs a value`);
    return value;
  };
  const name = opt('--name');
  const release = opt('--release');
  if (args.length !== 1 || args[0].startsWith('-')) {
    process.stderr.write('usage: scripts/oci-busybox.mjs OUT.tar [--name REF] [--release LINE]\n');
    process.exit(2);
  }
  const image = await buildBusyboxImage(args[0], { name, release });
  process.stdout.write(`${JSON.stringify(image, null, 2)}\n`);
}
