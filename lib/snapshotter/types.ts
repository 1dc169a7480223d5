// containerd's snapshotter model, as data: a snapshot's info, the mounts
// that make it a filesystem, its usage. Shapes follow containerd's
// snapshots.Info, mount.Mount and snapshots.Usage.

/** What a snapshot is: an active one (read-write, from prepare), a view (read-only, from view), or committed (a parent for others). */
export type SnapshotKind = 'active' | 'view' | 'committed';

/** A snapshot's info (containerd's snapshots.Info). */
export interface SnapshotInfo {
  /** Its key (active, view) or name (committed). */
  name: string;
  /** The committed snapshot it was made from; '' for none. */
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  created: Date;
  updated: Date;
}

/** How to mount a snapshot (containerd's mount.Mount): `mount -t type -o options source target`. */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

/** A snapshot's usage (containerd's snapshots.Usage). */
export interface SnapshotUsage {
  /** Bytes the pool has mapped for the snapshot's thin device (its own and those shared with its parent). */
  size: number;
  /** Inodes in use; 0: not tracked (containerd's devmapper snapshotter does not count them either). */
  inodes: number;
}

/** Options of prepare, view and commit. */
export interface SnapshotOptions {
  labels?: Record<string, string>;
}
