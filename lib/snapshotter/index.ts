// The snapshotter layer's public face.
export { Snapshotter, type SnapshotterOptions } from './snapshotter';
export type { Mount, SnapshotInfo, SnapshotKind, SnapshotOptions, SnapshotUsage } from './types';
export { serveSnapshotter, type ServeOptions, type SnapshotterServer } from './serve';
