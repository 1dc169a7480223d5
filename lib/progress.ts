import { invalidArg } from './errors';

/**
 * Long steps (making or growing a filesystem, discarding a device, growing a
 * pool) are announced to an optional callback: 'start' before, 'end' after,
 * whether the step succeeded or not. The CLI shows them on a terminal.
 */
export type ProgressHandler = (step: string, phase: 'start' | 'end') => void;

export async function step<T>(progress: ProgressHandler | undefined, name: string, body: () => Promise<T>): Promise<T> {
  progress?.(name, 'start');
  try {
    return await body();
  } finally {
    progress?.(name, 'end');
  }
}

export function checkProgress(value: unknown, field = 'onProgress'): ProgressHandler | undefined {
  if (value !== undefined && typeof value !== 'function') throw invalidArg(field, 'expected a function (step, phase)');
  return value as ProgressHandler | undefined;
}
