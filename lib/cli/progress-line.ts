// One status line on stderr for long steps, only when stderr is a terminal:
// a spinner with the step and elapsed seconds, then a tick and the time taken.
import type { ProgressHandler } from '../progress';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): ProgressHandler | undefined {
  if (!stream.isTTY) return undefined; // piped or redirected: say nothing
  let timer: NodeJS.Timeout | undefined;
  let started = 0;
  let frame = 0;
  const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
  return (step, phase) => {
    if (phase === 'start') {
      started = Date.now();
      const draw = () => stream.write(`\r\x1b[K${FRAMES[frame++ % FRAMES.length]} ${step}… ${seconds()}s`);
      draw();
      timer = setInterval(draw, 100);
      timer.unref();
    } else {
      clearInterval(timer);
      stream.write(`\r\x1b[K✓ ${step} (${seconds()}s)\n`);
    }
  };
}
