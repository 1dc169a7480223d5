// containerd's filter syntax over snapshot info (Walk's filters).
import { describe, expect, it } from 'vitest';
import { snapshotFilter } from '../../lib/snapshotter/filters';
import type { SnapshotInfo } from '../../lib/snapshotter/types';

const at = new Date(0);
const info = (name: string, kind: SnapshotInfo['kind'], parent = '', labels: Record<string, string> = {}): SnapshotInfo => ({
  name,
  parent,
  kind,
  labels,
  created: at,
  updated: at,
});
const all = [
  info('base', 'committed', '', { 'containerd.io/gc.root': 'x', team: 'a' }),
  info('ctr-1', 'active', 'base', { team: 'b' }),
  info('view-1', 'view', 'base'),
  info('layer/2', 'committed', 'base', { 'a,b': 'c' }),
];
const names = (...filters: string[]) => all.filter(snapshotFilter(filters)).map((i) => i.name);

describe('snapshotFilter', () => {
  it('no filter passes everything; == and != on name, parent and kind', () => {
    expect(names()).toEqual(['base', 'ctr-1', 'view-1', 'layer/2']);
    expect(names('kind==committed')).toEqual(['base', 'layer/2']);
    expect(names('parent==base')).toEqual(['ctr-1', 'view-1', 'layer/2']);
    expect(names('name==layer/2')).toEqual(['layer/2']);
    expect(names('kind!=committed')).toEqual(['ctr-1', 'view-1']);
  });

  it('commas are AND within a filter, separate filters are OR', () => {
    expect(names('kind==committed,parent==base')).toEqual(['layer/2']);
    expect(names('kind==view', 'name==base')).toEqual(['base', 'view-1']);
  });

  it('labels by quoted or bare key, presence, and regular expressions', () => {
    expect(names('labels."containerd.io/gc.root"==x')).toEqual(['base']);
    expect(names('labels.team==b')).toEqual(['ctr-1']);
    expect(names('labels.team')).toEqual(['base', 'ctr-1']);
    expect(names('labels."a,b"==c')).toEqual(['layer/2']);
    expect(names('name~=^(base|view)')).toEqual(['base', 'view-1']);
    expect(names('name~=/-1$/')).toEqual(['ctr-1', 'view-1']);
    expect(names('name=="ctr-1"')).toEqual(['ctr-1']);
  });

  it('refuses what it cannot read, before any snapshot is looked at', () => {
    for (const bad of ['size==1', '==x', 'name==', 'name~=('])
      expect(() => snapshotFilter([bad])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
    expect(() => snapshotFilter([7 as unknown as string])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARG' }));
  });
});
