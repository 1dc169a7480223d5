// Undo steps for operations that build state in several kernel calls: each
// step that succeeds pushes its inverse; on failure they run newest first and
// the original error is rethrown.
export class Undo {
  private readonly steps: Array<() => Promise<unknown>> = [];

  push(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }

  /** Run `body`; if it throws, undo what was pushed (ignoring undo failures) and rethrow. */
  static async guard<T>(body: (undo: Undo) => Promise<T>): Promise<T> {
    const undo = new Undo();
    try {
      return await body(undo);
    } catch (e) {
      for (const step of undo.steps.reverse()) await step().catch(() => undefined);
      throw e;
    }
  }
}
