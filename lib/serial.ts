// Calls that must not overlap, run one after another in the order they came
// (an object's changes within a process); a failure does not stop the queue.
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `body` after every call queued before it. */
  run<T>(body: () => Promise<T>): Promise<T> {
    const run = this.tail.then(body, body);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
