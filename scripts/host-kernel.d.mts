export function hostDeviceMapper(paths?: { misc?: string; control?: string }): { ok: boolean; why: string };
