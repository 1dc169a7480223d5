// A Snapshotter served as containerd's snapshots service on a unix socket, so
// containerd uses it as a proxy plugin ([proxy_plugins.NAME] type =
// "snapshot"). Errors cross as gRPC status codes the way containerd's errdefs
// map them back (NotFound, AlreadyExists, FailedPrecondition,
// InvalidArgument); every failed call is logged as one line.
import * as grpc from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, resolve as resolvePath } from 'node:path';
import { DmError, invalidArg } from '../errors';
import { checkPath } from '../validate';
import { snapshotsService, type WireInfo, type WireMount, type WireTimestamp } from './proto';
import type { Snapshotter } from './snapshotter';
import type { Mount, SnapshotInfo } from './types';

/** Options of serveSnapshotter. */
export interface ServeOptions {
  /** Path of the unix socket to listen on (made, with its directory; a stale one is replaced). */
  socket: string;
  /** Where the line of each failed call goes (default: standard error). */
  log?: (line: string) => void;
}

/** A running snapshots service; close() lets calls in flight finish. */
export interface SnapshotterServer {
  /** The socket it listens on. */
  readonly socket: string;
  /** Stop taking calls, wait for those in flight, remove the socket. The snapshotter stays open. */
  close(): Promise<void>;
}

const KIND = { active: 'ACTIVE', view: 'VIEW', committed: 'COMMITTED' } as const;

/** containerd's errdefs over gRPC: the status a DmError crosses as. */
export function grpcStatus(e: unknown): grpc.status {
  const code = e instanceof DmError ? e.code : undefined;
  switch (code) {
    case 'ERR_DM_NOT_FOUND':
      return grpc.status.NOT_FOUND;
    case 'ERR_DM_ALREADY_EXISTS':
      return grpc.status.ALREADY_EXISTS;
    case 'ERR_DM_FAILED_PRECONDITION':
      return grpc.status.FAILED_PRECONDITION;
    case 'ERR_DM_INVALID_ARG':
      return grpc.status.INVALID_ARGUMENT;
    case 'ERR_DM_POOL_FULL':
    case 'ENOSPC':
      return grpc.status.RESOURCE_EXHAUSTED;
    default:
      return grpc.status.UNKNOWN;
  }
}

function timestamp(d: Date): WireTimestamp {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 };
}

function wireInfo(i: SnapshotInfo): WireInfo {
  return {
    name: i.name,
    parent: i.parent,
    kind: KIND[i.kind],
    created_at: timestamp(i.created),
    updated_at: timestamp(i.updated),
    labels: i.labels,
  };
}

const wireMounts = (ms: Mount[]): { mounts: WireMount[] } => ({
  mounts: ms.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options })),
});

/** Infos per List message (containerd's own server sends 100). */
const LIST_BATCH = 100;

type Req = Record<string, unknown> & { key?: string; parent?: string; name?: string; labels?: Record<string, string> };

/** The service's handlers, each a call of `sn`. */
function handlers(sn: Snapshotter, log: (line: string) => void): grpc.UntypedServiceImplementation {
  const fail = (method: string, req: Req, e: unknown) => {
    const what = req.key ? ` key=${JSON.stringify(req.key)}` : req.name ? ` name=${JSON.stringify(req.name)}` : '';
    const code = e instanceof DmError ? e.code : 'error';
    const message = e instanceof Error ? e.message : String(e);
    log(`devmapper snapshotter: ${method}${what}: ${code}: ${message}`);
    return { code: grpcStatus(e), details: message };
  };
  const unary =
    (method: string, body: (req: Req) => Promise<object>): grpc.handleUnaryCall<Req, object> =>
    (call, callback) => {
      body(call.request).then(
        (res) => callback(null, res),
        (e: unknown) => callback(fail(method, call.request, e)),
      );
    };
  const labels = (req: Req) => (req.labels && Object.keys(req.labels).length > 0 ? { labels: req.labels } : {});
  return {
    Prepare: unary('Prepare', async (r) => wireMounts(await sn.prepare(r.key!, r.parent || undefined, labels(r)))),
    View: unary('View', async (r) => wireMounts(await sn.view(r.key!, r.parent || undefined, labels(r)))),
    Mounts: unary('Mounts', async (r) => wireMounts(await sn.mounts(r.key!))),
    Commit: unary('Commit', async (r) => (await sn.commit(r.name!, r.key!, labels(r)), {})),
    Remove: unary('Remove', async (r) => (await sn.remove(r.key!), {})),
    Stat: unary('Stat', async (r) => ({ info: wireInfo(await sn.stat(r.key!)) })),
    Update: unary('Update', async (r) => {
      const info = r.info as WireInfo | null;
      if (!info) throw invalidArg('info', 'missing');
      const paths = (r.update_mask as { paths?: string[] } | null)?.paths ?? [];
      return { info: wireInfo(await sn.update({ name: info.name, labels: info.labels }, ...paths)) };
    }),
    Usage: unary('Usage', async (r) => sn.usage(r.key!)),
    Cleanup: unary('Cleanup', async () => (await sn.cleanup(), {})),
    List: (call: grpc.ServerWritableStream<Req, object>) => {
      const filters = (call.request.filters as string[] | undefined) ?? [];
      let batch: WireInfo[] = [];
      sn.walk(
        (i) => {
          batch.push(wireInfo(i));
          if (batch.length === LIST_BATCH) {
            call.write({ info: batch });
            batch = [];
          }
        },
        ...filters,
      ).then(
        () => {
          if (batch.length > 0) call.write({ info: batch });
          call.end();
        },
        (e: unknown) => call.emit('error', fail('List', call.request, e)),
      );
    },
  };
}

/** Whether something answers on unix socket `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * Serve `snapshotter` as containerd's snapshots service on unix socket
 * `options.socket`. Resolves once it listens.
 */
export async function serveSnapshotter(snapshotter: Snapshotter, options: ServeOptions): Promise<SnapshotterServer> {
  if (typeof options !== 'object' || options === null) throw invalidArg('options', 'expected { socket }');
  const socket = resolvePath(checkPath(options.socket, 'socket'));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (await listening(socket))
    throw new DmError(`${socket}: another server listens on it`, { code: 'ERR_DM_ALREADY_EXISTS', device: socket });
  await mkdir(dirname(socket), { recursive: true });
  await rm(socket, { force: true }); // a stale socket of a killed server
  const server = new grpc.Server();
  server.addService(snapshotsService(), handlers(snapshotter, log));
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) =>
      e ? reject(new DmError(`cannot listen on ${socket}: ${e.message}`, { code: 'EADDRINUSE', device: socket, cause: e })) : resolve(),
    ),
  );
  let closing: Promise<void> | undefined;
  return {
    socket,
    close: () => (closing ??= new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => rm(socket, { force: true }))),
  };
}
